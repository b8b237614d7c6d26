// steermoe train: flags → TrainSettings.
import { join } from "node:path";
import { Option, type Command } from "commander";
import { Nproc, parseTrainSettings, train, TrainSettings, type TrainSummary } from "../recipes/train.js";
import {
  encodingOption,
  fromSchema,
  interruptible,
  modelOptions,
  settingOptions,
  settingsFromFlags,
  verbose,
} from "./flags.js";

export function trainCommand(cli: Command): void {
  const command = cli
    .command("train")
    .description("fine-tune only the unsafe experts, replaying the analysis batches (or train on --data)")
    .option("--out <dir>", "output folder (default RUN/train)")
    .addOption(
      fromSchema(
        new Option("--nproc <n>", "processes training together (FSDP2; one per GPU; experts only)"),
        Nproc,
        "",
      ),
    );
  settingOptions(command, TrainSettings, [
    ["--run <dir>", "run", "analysis run to train from"],
    ["--data <file>", "data", "or: conversations ending with the assistant target (JSON array or JSONL)"],
  ]);
  command.addOption(encodingOption(TrainSettings, "encoding"));
  modelOptions(command, "model", "--model");
  settingOptions(command, TrainSettings, [
    ["--batch-size <n>", "batchSize", "samples per batch with --data (a run keeps its analysis batches)"],
    ["--experts <set>", "experts", "batch-union, global, random, or a file of {layer, expert}"],
    ["--trainable <what>", "trainable", "experts, all (full fine-tune) or router"],
    ["--routing-mask <on|off>", "routingMask", "route each batch only to its own unsafe experts"],
    ["--loss-on <part>", "lossOn", "assistant tokens or all"],
    ["--router-loss <kind>", "routerLoss.kind", "router-consistency KL"],
    ["--router-loss-weight <w>", "routerLoss.weight", "weight of the router loss"],
    ["--router-loss-layers <which>", "routerLoss.layers", "all or masked layers only"],
    ["--lr <x>", "lr", "peak learning rate"],
    ["--warmup-ratio <x>", "warmupRatio", "share of steps warming up"],
    ["--weight-decay <x>", "weightDecay", "AdamW weight decay"],
    ["--grad-clip <x>", "gradClip", "gradient norm clip"],
    ["--epochs <n>", "epochs", "passes over the batches"],
    ["--no-shuffle", "shuffle", "keep the batch order in every epoch"],
    ["--seed <n>", "seed", "seed for batch order and initialisation"],
    ["--micro-batch <n>", "microBatch", "split each batch into micro-batches (still one step per batch)"],
    ["--gradient-checkpointing", "gradientCheckpointing", "trade compute for activation memory"],
    ["--checkpoint-every <n>", "checkpointEvery", "steps between checkpoints"],
  ]);
  command.action(async (flags: { out?: string; nproc: number }) => {
    const summary = await train(parseTrainSettings(settingsFromFlags(command)), {
      out: flags.out,
      nproc: flags.nproc,
      engine: { verbose: verbose(command) },
      signal: interruptible(),
    });
    console.log(formatTrainSummary(summary));
    if (!summary.complete) process.exitCode = 130;
  });
}

function formatTrainSummary(s: TrainSummary): string {
  if (!s.complete) {
    return `stopped at step ${s.steps}/${s.totalSteps} (checkpoint saved); rerun the same command to resume → ${s.out}`;
  }
  return [
    `${s.resumed ? "resumed and finished" : "done"}: ${s.steps} steps, final loss ${s.finalLoss?.toFixed(4)}`,
    s.trainedExperts
      ? `trained experts: ${s.trainedExperts} of ${s.totalExperts}`
      : "trained: every parameter of the chosen kind",
    `model → ${join(s.out, "final_model")}`,
  ].join("\n");
}
