"""The converter's errors: each says what was wrong, what was expected and what to do.

All are ``ValueError`` subclasses, so the command line prints them as one line and exits with status 2.
"""

from __future__ import annotations

__all__ = ["CheckpointError", "LayoutError", "UnsafeCheckpointError"]


class CheckpointError(ValueError):
    """The file cannot be read as a checkpoint (missing, empty, truncated, not a state dict, ...)."""


class UnsafeCheckpointError(CheckpointError):
    """The pickle would call or build something outside the allow-list; nothing in it was run."""


class LayoutError(CheckpointError):
    """The tensors do not form an HRNet of a known layout, or contradict ``--family`` / ``--arch``."""
