"""Runs the bit-identity tests (marker `cpu_paths`) again under a second CPU kernel path.

CI runs on whichever x86 machine is at hand, and PyTorch picks its vector kernels per CPU
(ATEN_CPU_CAPABILITY: default, avx2, avx512): a claim such as "bias 0 is bit-identical to no
steering" that holds only for the lanes of one CPU fails on another. So the claims run twice on
one machine: under its own kernels (the main pytest run), then here under another. On an AVX-512
machine the second path is AVX2 throughout (PyTorch's, oneDNN's and MKL's kernels), as on an
AVX2-only CPU; elsewhere it is PyTorch's scalar path.

    python engine/tests/other_cpu_path.py [pytest arguments]
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch


def main() -> int:
    native = torch.backends.cpu.get_cpu_capability()
    env = dict(os.environ)
    if native.upper().startswith("AVX512"):
        env.update(ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2", MKL_ENABLE_INSTRUCTIONS="AVX2")
    else:
        env["ATEN_CPU_CAPABILITY"] = "default"
    other = env["ATEN_CPU_CAPABILITY"]
    print(f"cpu_paths: native kernels {native}; again under ATEN_CPU_CAPABILITY={other}", flush=True)
    tests = Path(__file__).resolve().parent
    command = [sys.executable, "-m", "pytest", "-q", "-m", "cpu_paths", str(tests), *sys.argv[1:]]
    return subprocess.call(command, env=env)


if __name__ == "__main__":
    sys.exit(main())
