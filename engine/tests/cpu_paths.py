"""The engine's tests, on two CPU kernel paths: all of them under this CPU's own kernels, then the
bit-identity claims (marker `cpu_paths`) again under another.

CI runs on whichever x86 machine is at hand, and PyTorch picks its vector kernels per CPU
(ATEN_CPU_CAPABILITY: default, avx2, avx512): a claim such as "bias 0 is bit-identical to no
steering" that holds only for the lanes of one CPU fails on another. So the claims run twice on
one machine. On an AVX-512 machine the second path is AVX2 throughout (PyTorch's, oneDNN's and
MKL's kernels), as on an AVX2-only CPU; elsewhere it is PyTorch's scalar path. The tiny models are
built once, by the first pass, for both (STEERMOE_TEST_MODELS, read by conftest.py).

    python engine/tests/cpu_paths.py [pytest arguments]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch


def main() -> int:
    tests = Path(__file__).resolve().parent
    pytest = [sys.executable, "-m", "pytest", "-q", str(tests), *sys.argv[1:]]
    with tempfile.TemporaryDirectory(prefix="steermoe-test-models-") as models:
        env = {**os.environ, "STEERMOE_TEST_MODELS": models}
        status = subprocess.call(pytest, env=env)
        if status != 0:
            return status
        native = torch.backends.cpu.get_cpu_capability()
        if native.upper().startswith("AVX512"):
            env.update(ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2", MKL_ENABLE_INSTRUCTIONS="AVX2")
        else:
            env["ATEN_CPU_CAPABILITY"] = "default"
        print(f"cpu_paths: native kernels {native}; again under ATEN_CPU_CAPABILITY={env['ATEN_CPU_CAPABILITY']}")
        sys.stdout.flush()
        return subprocess.call([*pytest, "-m", "cpu_paths"], env=env)


if __name__ == "__main__":
    sys.exit(main())
