"""A real Hugging Face Hub cache on disk, for loading models offline through huggingface_hub's own code."""

from __future__ import annotations

import shutil
from pathlib import Path


def populate_hub_cache(
    cache_dir: Path, repo_id: str, files: dict[str, Path], revision: str = "0" * 40
) -> Path:
    """Lay out ``files`` as the snapshot ``revision`` of model repo ``repo_id``, with ``refs/main`` pointing at it.

    This is the layout ``hf_hub_download`` reads with ``HF_HUB_OFFLINE=1`` and ``HF_HUB_CACHE=cache_dir``.
    """
    repo_dir = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, src in files.items():
        shutil.copyfile(src, snapshot / name)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)
    return snapshot
