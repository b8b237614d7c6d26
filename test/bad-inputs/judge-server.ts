// A hostile OpenAI-compatible judge on loopback, in a process of its own (the bad-input cases run
// the CLI with spawnSync, which would block a server in the test's own process). The first path
// segment picks the behaviour, the second names the case so each case keeps its own count:
//   /ok/ID/v1        answers as a refusal judge
//   /echo401/ID/v1   401 whose body repeats the Authorization header, query string and URL
//   /fail500/ID/v1   500 whose body repeats the key, every time
//   /garbage/ID/v1   200 with HTML that repeats the key
//   /hang/ID/v1      never answers
//   /reset/ID/v1     resets the connection on the first request, closes it on the second, then hangs
//   /notfound/ID/v1  404
//   /strict/ID/v1    500 on the first request, then answers only when the query has
//                    api-version=2024-06-01 and the request carries Basic auth for
//                    judge:pw-s3cret-9 (else 400 naming what is missing), with a reason
//                    that repeats the credentials
// Prints the port on stdout once listening.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

const requests = new Map<string, number>();

function answer(res: ServerResponse, body: string, reason = "rule"): void {
  const { messages } = JSON.parse(body) as { messages: { role: string; content: string }[] };
  const response = /<response>\n([\s\S]*)\n<\/response>/.exec(messages.at(-1)!.content)?.[1] ?? "";
  const isRefusal = /sorry|cannot|can't/i.test(response);
  const content = JSON.stringify({ is_refusal: isRefusal, confidence: 0.9, reason });
  res.writeHead(200, { "content-type": "application/json" });
  res.end(JSON.stringify({ choices: [{ message: { content } }] }));
}

function handle(req: IncomingMessage, res: ServerResponse, body: string): void {
  const url = new URL(req.url!, "http://loopback");
  const [mode, id] = url.pathname.split("/").filter(Boolean);
  const seen = (requests.get(`${mode}/${id}`) ?? 0) + 1;
  requests.set(`${mode}/${id}`, seen);
  const auth = req.headers.authorization ?? "";
  const echo = `Incorrect API key provided: ${auth.replace(/^\w+ /, "")}. Header: ${auth}. Query: ${url.search}. URL: ${req.url}`;
  switch (mode) {
    case "ok":
      return answer(res, body);
    case "echo401":
      res.writeHead(401, { "content-type": "application/json" });
      return void res.end(JSON.stringify({ error: { message: echo, type: "invalid_request_error" } }));
    case "fail500":
      res.writeHead(500);
      return void res.end(`server error: ${echo}`);
    case "garbage":
      res.writeHead(200, { "content-type": "text/html" });
      return void res.end(`<html><body>Welcome!\n${echo}</body></html>`);
    case "hang":
      return;
    case "reset":
      if (seen === 1) return void req.socket.resetAndDestroy();
      if (seen === 2) return void req.socket.destroy();
      return;
    case "strict": {
      if (seen === 1) {
        res.writeHead(500);
        return void res.end(echo);
      }
      const basic = `Basic ${Buffer.from("judge:pw-s3cret-9").toString("base64")}`;
      const missing = [
        url.searchParams.get("api-version") === "2024-06-01" ? "" : "api-version",
        auth === basic ? "" : "basic auth",
      ].filter(Boolean);
      if (missing.length === 0) return answer(res, body, echo);
      res.writeHead(400);
      return void res.end(`missing ${missing.join(" and ")}`);
    }
    default:
      res.writeHead(404);
      return void res.end(`no route ${url.pathname}`);
  }
}

// `node --test dist/test/` loads every file under test/ as a test file: without --serve this one is
// an empty test file, not a server that never exits.
if (process.argv.includes("--serve")) {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => handle(req, res, Buffer.concat(chunks).toString("utf8")));
  });
  server.listen(0, "127.0.0.1", () => {
    process.stdout.write(`${(server.address() as AddressInfo).port}\n`);
  });
}
