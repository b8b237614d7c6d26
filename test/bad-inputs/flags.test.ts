// Flags with a missing or impossible value.
import { badInputs } from "./harness.js";

badInputs("flags", [
  {
    name: "--data with no value",
    setup: () => ["analyze", "--run", "run", "--data"],
    expect: /--data/,
    absent: ["run"],
  },
  {
    name: "a server backend without --server",
    setup: () => ["analyze", "--run", "run", "--data", "d.json", "--model", "m", "--backend", "vllm"],
    expect: /^steermoe: --backend vllm needs --server URL/,
    absent: ["run"],
  },
  {
    name: "--server with the local backend",
    setup: () => [
      "generate",
      "--input",
      "i.jsonl",
      "--out",
      "out",
      "--model",
      "m",
      "--server",
      "http://h:8000",
    ],
    expect: /^steermoe: --server is for a server backend: add --backend vllm or --backend sglang$/,
    absent: ["out"],
  },
  {
    name: "--server that is not an http URL",
    setup: () => [
      "eval",
      "--out",
      "out",
      "--model",
      "m",
      "--backend",
      "sglang",
      "--server",
      "gpu-node:30000",
    ],
    expect: /^steermoe: --server gpu-node:30000: expected an http:\/\/ or https:\/\/ URL$/,
    absent: ["out"],
  },
  {
    name: "--api-key-env naming an unset variable",
    setup: () => [
      "analyze",
      "--run",
      "run",
      "--data",
      "d.json",
      "--model",
      "m",
      "--backend",
      "vllm",
      "--server",
      "http://127.0.0.1:9",
      "--api-key-env",
      "STEERMOE_UNSET_KEY_VAR",
    ],
    expect: /^steermoe: --api-key-env STEERMOE_UNSET_KEY_VAR: that environment variable is not set$/,
    absent: ["run"],
  },
  {
    name: "an unknown command",
    setup: () => ["analyse"],
    expect: /analyse/,
  },
]);
