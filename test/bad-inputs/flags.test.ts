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
    name: "--workers and --devices together",
    setup: () => ["analyze", "--run", "run", "--workers", "2", "--devices", "cpu,cpu"],
    expect: /--devices.*--workers|--workers.*--devices/,
    absent: ["run"],
  },
  {
    name: "--devices naming no device",
    setup: () => ["generate", "--devices", "cuda:0,gpu1"],
    expect: /--devices.*expected cpu, cuda or cuda:N/,
  },
  {
    name: "an unknown command",
    setup: () => ["analyse"],
    expect: /analyse/,
  },
]);
