// steermoe jailbreak: goals → FlipAttack pairs for analyze.
import type { Command } from "commander";
import { jailbreak, JailbreakSettings } from "../recipes/jailbreak.js";
import { benchmarkOptions } from "./benchmark.js";
import { configOptions, encodingOption, settingOptions, settingsFromFlags } from "./flags.js";

export function jailbreakCommand(cli: Command): void {
  const command = cli
    .command("jailbreak")
    .description("wrap harmful goals in a jailbreak: pairs for `analyze --keep-filtered`")
    .requiredOption("--out <file>", "pairs file to write (JSON, the FlipAttack record shape)");
  settingOptions(command, JailbreakSettings, [
    ["--attack <name>", "attack", "the jailbreak"],
    ["--goals <file>", "goals", "harmful goals: CSV, JSON, JSONL or Parquet"],
    ["--goal-column <name>", "goalColumn", "the column of --goals holding the goal"],
  ]);
  benchmarkOptions(command, "goals from a benchmark (its harmful prompts)");
  command.addOption(encodingOption(JailbreakSettings, "encoding"));
  settingOptions(command, JailbreakSettings, [
    [
      "--mode <mode>",
      "flipattack.mode",
      "FWO word order, FCW characters in each word, FCS characters in the sentence, FMM fool-model mode",
    ],
    ["--cot <on|off>", "flipattack.cot", "chain of thought: solve step by step"],
    ["--lang-gpt <on|off>", "flipattack.langGpt", "LangGPT role-play system prompt"],
    ["--few-shot <on|off>", "flipattack.fewShot", "decoding demonstrations built from the goal's halves"],
    [
      "--wording <wording>",
      "flipattack.wording",
      "code: the released code's prompts; paper: those logged behind the paper's numbers; organism: shorter",
    ],
    [
      "--llama-victim <on|off>",
      "flipattack.llamaVictim",
      "the code's prompt for Llama victims (two harm phrases left out)",
    ],
  ]);
  configOptions(command);
  command.action(async (flags: { out: string }) => {
    const records = await jailbreak(settingsFromFlags(command), flags.out);
    console.log(`${records.length} pairs → ${flags.out}`);
  });
}
