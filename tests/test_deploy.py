"""CPU deployment tests (``tests/deploy_runtimes.py``), run in a Python process of their own.

Why a process of its own: after OpenVINO (and ONNX Runtime) have run inside a pytest-xdist worker, a later test of
that worker that starts a subprocess (``subprocess.run``, ``mp.spawn``, torchrun) intermittently killed the worker
with a segmentation fault (three full runs out of three; none with these tests left out). The runtimes' thread
pools stay in the process that loaded them; giving them a process that ends with these tests keeps every other
test's process free of them. The file's own tests still report one by one in the output below on failure.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_deployment_tests_pass_in_their_own_process():
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/deploy_runtimes.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1]
