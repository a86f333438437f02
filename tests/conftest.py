"""Suite-wide fixtures."""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture
def xdist_threads():
    """Under pytest-xdist, share the cores out between the workers for the duration of a test.

    Every worker defaults to one intra-op thread per core; together they oversubscribe the machine and many small
    ops then run several times slower (threads wait on each other). Opt-in, and restored afterwards: with one
    thread oneDNN may pick other convolution algorithms, and the bit-exact fixture tests need the default.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, before // workers) if workers > 1 else before)
    yield
    torch.set_num_threads(before)
