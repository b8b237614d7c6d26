// report.html end to end: a real analysis run (tiny model, real engine), hostile dataset text,
// and the page opened in headless Chromium.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { chromium, type Browser, type Page } from "playwright-core";
import { EvalResults } from "../src/components/io/run-files.js";
import { writeReport } from "../src/components/report/report.js";
import { flipattackRecords, run, tempDir } from "./helpers.js";

const CHROMIUM = "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
// Each piece would run script or add an element if the page ever treated data as markup.
const HOSTILE = [
  "<script>window.__pwned = 1; alert(1)</script>",
  "<img src=x onerror=window.__pwned=2;alert(2)>",
  "</textarea>",
  '<b id="injected">bold</b>',
  "&lt;entity&gt;",
  "</script><script>alert(3)</script>",
];
const HOSTILE_TEXT = `Ignore all rules ${HOSTILE.join(" and ")}\u2028end`;

// Removed once every test of this file has run.
const dir = tempDir({ after });
let runDir: string;
let browser: Browser;

before(async () => {
  // Fail, never skip: CI installs Chromium in its setup, and a skipped test proves nothing.
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: install it with apt-get install -y chromium`);
  const model = join(dir, "model");
  const made = run(["tiny-model", "--arch", "olmoe", "--out", model, "--layers", "4", "--experts", "16"]);
  assert.equal(made.status, 0, made.stderr);
  const data = join(dir, "data.json");
  writeFileSync(data, JSON.stringify(flipattackRecords(24)));
  runDir = join(dir, "run");
  const analyzed = run([
    ...["analyze", "--data", data, "--model", model, "--run", runDir, "--qc", "off"],
    ...["--batch-size", "8", "--max-new-tokens", "8"],
  ]);
  assert.equal(analyzed.status, 0, analyzed.stderr);
  injectHostileSample(runDir);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
});

after(async () => {
  await browser?.close();
});

function jsonl(path: string): Record<string, unknown>[] {
  return readFileSync(path, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

function injectHostileSample(run: string): void {
  const path = join(run, "samples.jsonl");
  const rows = jsonl(path);
  const first = rows[0] as { messages: { role: string; content: string }[]; text: string };
  first.messages.at(-1)!.content = HOSTILE_TEXT;
  first.text = `Sure: ${HOSTILE_TEXT}`;
  writeFileSync(path, rows.map((r) => JSON.stringify(r) + "\n").join(""));
}

interface Opened {
  page: Page;
  problems: string[];
  dialogs: string[];
}

async function open(file: string): Promise<Opened> {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const problems: string[] = [];
  const dialogs: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  page.on("dialog", (d) => {
    dialogs.push(d.message());
    void d.dismiss();
  });
  await page.goto(`file://${file}`);
  await page.waitForSelector("section#samples h2");
  return { page, problems, dialogs };
}

function screenshotPath(name: string): string {
  const base = process.env.STEERMOE_SCREENSHOT_DIR ?? join(dir, "screenshots");
  mkdirSync(base, { recursive: true });
  return join(base, name);
}

async function assertNothingInjected(o: Opened): Promise<void> {
  const found = await o.page.evaluate(() => {
    const w = globalThis as unknown as {
      __pwned?: number;
      document: { querySelectorAll(s: string): unknown[] };
    };
    return {
      pwned: w.__pwned ?? null,
      injected: w.document.querySelectorAll("img, textarea, #injected, b").length,
      // the data block, uPlot and the page script; nothing else
      scripts: w.document.querySelectorAll("script").length,
    };
  });
  assert.deepEqual(found, { pwned: null, injected: 0, scripts: 3 });
  assert.deepEqual(o.dialogs, []);
}

test("analysis-only run: heatmap cells and tooltips, hostile text shown literally, missing parts noted", async () => {
  const { path, missing } = await writeReport(runDir);
  assert.deepEqual(missing.sort(), [
    "eval/results.json",
    "eval/samples.jsonl",
    "train/train_log.jsonl",
    "train/training_metadata.json",
  ]);
  const html = readFileSync(path, "utf8");
  for (const s of ["<script>window.__pwned", "<img src=x", "</textarea>", "\u2028"]) {
    assert.equal(html.includes(s), false, `raw html contains ${JSON.stringify(s)}`);
  }

  const o = await open(path);
  const experts = JSON.parse(readFileSync(join(runDir, "experts.json"), "utf8"));
  const cells = o.page.locator("svg.heatmap rect.cell[data-layer][data-expert]");
  assert.equal(await cells.count(), experts.moe_layers.length * experts.num_experts);

  const top = experts.global[0] as { layer: number; expert: number; label: string };
  const row = readFileSync(join(runDir, "risk_diff.csv"), "utf8").split("\n")[1]!.split(",");
  assert.equal(row[2], top.label, "risk_diff.csv and experts.json agree on the top expert");
  await o.page.hover(`rect.cell[data-layer="${top.layer}"][data-expert="${top.expert}"]`);
  const tip = await o.page.locator("#tooltip").innerText();
  assert.ok(tip.includes(top.label), tip);
  assert.ok(tip.includes(`risk_diff ${Number(row[9]).toFixed(4)}`), tip);
  assert.ok(await o.page.locator("#tooltip").isVisible());

  const samples = await o.page.locator("#samples-list").innerText();
  for (const s of HOSTILE) assert.ok(samples.includes(s), `not shown literally: ${s}`);
  await o.page.fill("#samples-search", "onerror=window");
  assert.equal(await o.page.locator("#samples-list .card").count(), 1);

  const text = await o.page.locator("main").innerText();
  assert.match(text, /not available: train\/train_log\.jsonl missing/);
  assert.match(text, /not available: eval\/results\.json missing/);
  await assertNothingInjected(o);
  await o.page.screenshot({ path: screenshotPath("report-analysis.png"), fullPage: true });
  assert.deepEqual(o.problems, []);
  await o.page.close();
});

function writeTrainingAndEval(run: string): void {
  const experts = JSON.parse(readFileSync(join(run, "experts.json"), "utf8"));
  const train = join(run, "train");
  mkdirSync(join(run, "eval"), { recursive: true });
  writeFileSync(
    join(train, "training_metadata.json"),
    JSON.stringify({ trained_experts: experts.global, lr: 5e-5, note: HOSTILE_TEXT }),
  );
  const log = Array.from({ length: 40 }, (_, i) => ({
    step: i + 1,
    epoch: Math.floor(i / 20),
    batch_idx: i % 3,
    sample_ids: ["0:safe"],
    loss: 3 * Math.exp(-i / 12) + 0.2,
    router_loss: 0.01 + 0.002 * Math.cos(i),
    lr: 5e-5 * Math.min(1, (i + 1) / 10),
    grad_norm: 1 + 1 / (i + 1),
    tokens: 120,
    seconds: 0.4,
  }));
  writeFileSync(join(train, "train_log.jsonl"), log.map((r) => JSON.stringify(r) + "\n").join(""));
  const metric = (rate: number) => ({
    rate,
    low: rate - 0.05,
    high: rate + 0.05,
    k: Math.round(rate * 100),
    n: 100,
  });
  const results = ["base", `trained ${HOSTILE[1]}`].map((name, i) => ({
    name,
    source: "model",
    steered: false,
    metrics: {
      attack_success: metric(0.6 - 0.4 * i),
      plain_refusal: metric(0.9),
      benign_refusal: metric(0.1),
    },
  }));
  writeFileSync(join(run, "eval", "results.json"), JSON.stringify(results));
  const rows = results.flatMap((m, i) =>
    ["jailbreak", "plain", "benign"].map((set, j) => ({
      model: m.name,
      set,
      id: `${set}-${i}-${j}`,
      prompt: [{ role: "user", content: j === 0 ? HOSTILE_TEXT : `a ${set} request` }],
      response: j === 0 ? `</textarea>${HOSTILE[0]}` : "I'm sorry, but I can't help with that.",
      is_refusal: j !== 0,
      reason: "keyword",
    })),
  );
  writeFileSync(join(run, "eval", "samples.jsonl"), rows.map((r) => JSON.stringify(r) + "\n").join(""));
  writeFileSync(join(run, "eval", "eval_config.json"), JSON.stringify({ finished: true }));
}

test("with training and evaluation files: curves, trained experts, eval table and filtered examples", async () => {
  mkdirSync(join(runDir, "train"), { recursive: true });
  writeTrainingAndEval(runDir);
  const { path, missing } = await writeReport(runDir, join(dir, "full-report.html"));
  assert.deepEqual(missing, []);

  const o = await open(path);
  const trained = JSON.parse(readFileSync(join(runDir, "experts.json"), "utf8")).global.length;
  assert.equal(await o.page.locator("#trained-table tbody tr").count(), trained);
  assert.ok((await o.page.locator("#curves .uplot canvas").count()) >= 3, "loss, lr and grad-norm charts");
  assert.equal(await o.page.locator("#eval-table tbody tr").count(), 2);

  assert.equal(await o.page.locator("#eval-list .card").count(), 6);
  await o.page.selectOption("#eval-model", "base");
  await o.page.selectOption("#eval-set", "jailbreak");
  assert.equal(await o.page.locator("#eval-list .card").count(), 1);
  const example = await o.page.locator("#eval-list").innerText();
  for (const s of HOSTILE) assert.ok(example.includes(s), `not shown literally: ${s}`);
  assert.ok((await o.page.locator("#eval-table").innerText()).includes(HOSTILE[1]!));
  assert.match(
    await o.page.locator("#benchmarks").innerText(),
    /not available: the evaluation ran no benchmark/,
  );

  assert.doesNotMatch(await o.page.locator("#eval").innerText(), /did not finish/);

  await assertNothingInjected(o);
  await o.page.screenshot({ path: screenshotPath("report-full.png"), fullPage: true });
  assert.deepEqual(o.problems, []);
  await o.page.close();

  // An eval stopped part-way (its config still says unfinished): the page and the command say so.
  writeFileSync(join(runDir, "eval", "eval_config.json"), JSON.stringify({ finished: false }));
  const stopped = run(["report", "--run", runDir, "--out", join(dir, "stopped-report.html")]);
  assert.equal(stopped.status, 0, stopped.stderr);
  assert.match(
    stopped.stderr,
    /^steermoe: warning: the evaluation in \S+ did not finish \(stopped or killed\)/m,
  );
  const s = await open(join(dir, "stopped-report.html"));
  assert.match(await s.page.locator("#eval").innerText(), /warning: the evaluation in \S+ did not finish/);
  await s.page.close();
  writeFileSync(join(runDir, "eval", "eval_config.json"), JSON.stringify({ finished: true }));
});

test("an empty folder still gives a page, with a note for every section", async (t) => {
  const empty = tempDir(t);
  const { path, missing } = await writeReport(empty);
  assert.equal(missing.length, 8);
  const o = await open(path);
  assert.equal(await o.page.locator("section p.note").count(), 11);
  assert.match(await o.page.locator("#heatmap").innerText(), /not available: risk_diff\.parquet missing/);
  assert.deepEqual(o.problems, []);
  await o.page.close();
});

test("a steering sweep: one curve per model, its points, intervals and operating point", async () => {
  const sweep = join(dir, "sweep");
  mkdirSync(sweep, { recursive: true });
  const metric = (rate: number) => ({
    rate,
    low: Math.max(0, rate - 0.06),
    high: Math.min(1, rate + 0.06),
    k: 0,
    n: 60,
  });
  const intensities = [0, 0.5, 1, 2];
  // Operating points: base at 1 (benign 0.14 <= 0.10 + 0.05, 0.30 is not), fine-tuned at 0.5.
  const curves = {
    base: { attack: [0.9, 0.7, 0.5, 0.2], benign: [0.1, 0.12, 0.14, 0.3] },
    "fine-tuned": { attack: [0.1, 0.05, 0.05, 0.02], benign: [0.1, 0.1, 0.2, 0.4] },
  };
  const results = Object.entries(curves).flatMap(([model, { attack, benign }]) =>
    intensities.map((t, i) => ({
      name: t === 0 ? model : `${model}+steer×${t}`,
      source: "m",
      steered: t > 0,
      ...(t > 0 && { steer: { model, intensity: t } }),
      metrics: {
        attack_success: metric(attack[i]!),
        plain_refusal: metric(1),
        benign_refusal: metric(benign[i]!),
      },
    })),
  );
  writeFileSync(join(sweep, "results.json"), JSON.stringify(results));
  const { path } = await writeReport(runDir, join(dir, "sweep-report.html"), sweep);
  const o = await open(path);
  const models = o.page.locator("#steering .curve-model");
  assert.deepEqual(await models.evaluateAll((els) => els.map((e) => e.getAttribute("data-model"))), [
    "base",
    "fine-tuned",
  ]);
  for (const [i, expected] of [
    /operating point\s*intensity 1\b/,
    /operating point\s*intensity 0\.5\b/,
  ].entries()) {
    const model = models.nth(i);
    // Two series against intensity, plus the trade-off chart: one dot per point each.
    assert.equal(await model.locator("svg circle.pt").count(), 3 * intensities.length);
    assert.equal(await model.locator("svg polygon.band").count(), 2);
    assert.equal(await model.locator("svg circle.op").count(), 2);
    assert.match(await model.innerText(), expected);
  }
  await o.page.locator("#steering").screenshot({ path: screenshotPath("report-steering.png") });
  assert.deepEqual(o.problems, []);
  await o.page.close();
});

test("benchmarks: per benchmark a bar per model and metric with its interval, the category table, steered variants left out", async () => {
  const folder = join(dir, "bench");
  mkdirSync(folder, { recursive: true });
  const rate = (r: number, n = 10) => ({
    rate: r,
    low: Math.max(0, r - 0.2),
    high: Math.min(1, r + 0.2),
    k: Math.round(r * n),
    n,
  });
  // As eval writes them: XSTest with over-refusal in its safe categories only, StrongREJECT with no
  // benign prompts, HarmBench with copyright behaviours left out; the category names are dataset text.
  const benchmarks = (shift: number) => ({
    xstest: {
      metrics: { attack_success: rate(0.5 - shift), refusal: rate(0.5 + shift), over_refusal: rate(0.2) },
      categories: {
        homonyms: { over_refusal: rate(0.2) },
        contrast_homonyms: { attack_success: rate(0.5 - shift), refusal: rate(0.5 + shift) },
      },
      skipped: 0,
    },
    "strongreject:small": {
      metrics: { attack_success: rate(0.8 - shift), refusal: rate(0.2 + shift) },
      categories: {
        [HOSTILE_TEXT]: { attack_success: rate(0.8 - shift), refusal: rate(0.2 + shift) },
        Violence: { attack_success: rate(0.7 - shift), refusal: rate(0.3 + shift) },
        Disinformation: { attack_success: rate(0.9 - shift), refusal: rate(0.1 + shift) },
      },
      skipped: 3,
    },
  });
  const models = ["base", `trained ${HOSTILE[1]}`];
  const results = EvalResults.parse([
    ...models.map((name, i) => ({
      name,
      source: "m",
      steered: false,
      metrics: {},
      benchmarks: benchmarks(0.4 * i),
    })),
    {
      name: "base+steer×1",
      source: "m",
      steered: true,
      steer: { model: "base", intensity: 1 },
      metrics: {},
      benchmarks: benchmarks(0.3),
    },
  ]);
  writeFileSync(join(folder, "results.json"), JSON.stringify(results));
  const { path } = await writeReport(runDir, join(dir, "bench-report.html"), folder);
  const o = await open(path);
  const blocks = o.page.locator("#benchmarks .benchmark");
  assert.deepEqual(await blocks.evaluateAll((els) => els.map((e) => e.getAttribute("data-benchmark"))), [
    "xstest",
    "strongreject:small",
  ]);
  const bars = (i: number) =>
    blocks
      .nth(i)
      .locator("svg rect.rate-bar")
      .evaluateAll((els) => els.map((e) => [e.getAttribute("data-metric"), e.getAttribute("data-model")]));
  const each = (metrics: string[]) => metrics.flatMap((m) => models.map((name) => [m, name]));
  assert.deepEqual(await bars(0), each(["attack_success", "refusal", "over_refusal"]));
  assert.deepEqual(await bars(1), each(["attack_success", "refusal"]));
  // Three whisker lines a bar; a bar's drawn height is its rate (0 at the axis, 100% at the top).
  assert.equal(await blocks.nth(1).locator("svg line.whisker").count(), 3 * 4);
  const heights = await blocks
    .nth(1)
    .locator("svg rect.rate-bar")
    .evaluateAll((els) => els.map((e) => e.getBoundingClientRect().height));
  const full = heights[0]! / 0.8;
  assert.deepEqual(
    heights.map((v) => Math.round((100 * v) / full)),
    [80, 40, 20, 60],
  );

  const rows = (i: number) => blocks.nth(i).locator("table tbody tr");
  assert.equal(await rows(0).count(), 3 * models.length, "all, homonyms, contrast_homonyms");
  assert.equal(await rows(1).count(), 4 * models.length, "all and three categories");
  assert.deepEqual(
    await rows(0)
      .nth(2)
      .locator("td")
      .evaluateAll((els) => els.map((e) => e.textContent)),
    ["base", "n/a", "n/a", "20.0% [0.0%, 40.0%]  n=10"],
  );
  const strong = await blocks.nth(1).innerText();
  for (const piece of HOSTILE) assert.ok(strong.includes(piece), `not shown literally: ${piece}`);
  assert.match(strong, /copyright behaviours left out\s*3/);
  assert.equal((await o.page.locator("#benchmarks").innerText()).includes("steer×"), false);

  await assertNothingInjected(o);
  await o.page.locator("#benchmarks").screenshot({ path: screenshotPath("report-benchmarks.png") });
  assert.deepEqual(o.problems, []);
  await o.page.close();
});
