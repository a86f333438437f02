"""Test-session settings shared by every test file."""

from __future__ import annotations

import os

import torch

# Under pytest-xdist each worker is a process with torch's default of one intra-op thread per core, so `-n 2` on two
# cores runs four busy OpenMP threads that spin-wait on each other; small models then cost many times the CPU.
# Give each worker its share of the cores instead.
if os.environ.get("PYTEST_XDIST_WORKER"):
    _workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // _workers))
