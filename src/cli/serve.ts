// steermoe serve: flags → ServeSettings; runs the routing server until Ctrl-C.
import type { Command } from "commander";
import { parseSettings } from "../components/config.js";
import { serve, ServeSettings } from "../recipes/serve.js";
import {
  computeBatchOption,
  modelOptions,
  requireSetting,
  settingOptions,
  settingsFromFlags,
  verbose,
} from "./flags.js";

export function serveCommand(cli: Command): void {
  const command = cli
    .command("serve")
    .description(
      "answer like vLLM or SGLang with --enable-return-routed-experts, from this engine (token ids in, ids and experts out)",
    );
  modelOptions(command, "model", "--model");
  settingOptions(command, ServeSettings, [
    ["--flavor <server>", "flavor", "whose API: vllm (/v1/completions) or sglang (/generate)"],
    ["--host <address>", "host", "address to listen on"],
    ["--port <n>", "port", "port to listen on, 0 = any free one"],
    [
      "--served-model-name <name>",
      "servedModelName",
      "model name in /v1/models and requests (default: --model)",
    ],
    ["--no-routed-experts", "routedExperts", "answer as a server started without the routed-experts flag"],
    ["--api-key-env <name>", "apiKeyEnv", "environment variable holding the key requests must bear"],
  ]);
  command.addOption(computeBatchOption("computeBatch"));
  command.action(async () => {
    const settings = settingsFromFlags(command);
    requireSetting(command, settings, "model.source");
    const server = await serve(parseSettings(ServeSettings, settings, "serve"), {
      verbose: verbose(command),
    });
    console.log(`listening on ${server.url}`);
    for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => void server.stop());
    const code = await server.exited;
    process.exitCode = code ?? 0;
  });
}
