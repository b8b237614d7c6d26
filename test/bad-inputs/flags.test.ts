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
    name: "an unknown command",
    setup: () => ["analyse"],
    expect: /analyse/,
  },
]);
