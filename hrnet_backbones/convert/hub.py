"""Pushing a converted folder to the Hugging Face Hub with ``huggingface_hub`` (``create_repo`` + ``upload_folder``).

The token is the usual one: ``HF_TOKEN`` or the login stored by ``hf auth login``. A dry run lists exactly the files
(and sizes) an upload would send, and sends nothing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .writer import FOLDER_FILES, check_folder

__all__ = ["PushResult", "check_repo_id", "push_folder", "upload_plan"]


@dataclass(frozen=True)
class PushResult:
    """What a push sent (or, for a dry run, would send)."""

    repo_id: str
    revision: str
    private: bool
    files: tuple[tuple[str, int], ...]
    dry_run: bool
    commit_url: str | None = None


def check_repo_id(repo_id: str) -> None:
    """Refuse a repository id that is not ``ORG/NAME`` as the Hub spells them (``huggingface_hub``'s own check).

    The id ends up in the model card's usage code, so nothing else (a newline, quotes, code) may pass.
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        first = str(e).strip().splitlines()[0]
        raise ValueError(
            f"invalid --repo-id {repo_id!r}: {first}; give ORG/NAME, e.g. my-org/hrnet_w32"
        ) from None
    if repo_id.count("/") != 1:
        raise ValueError(f"--repo-id must be ORG/NAME (or USER/NAME), got {repo_id!r}")


def upload_plan(folder: str | os.PathLike[str]) -> list[tuple[str, int]]:
    """``(file name, size in bytes)`` of each file a push uploads, once ``folder`` is verified as a converted one
    (:func:`writer.check_folder`: the weights load and fit the architecture in ``config.json``)."""
    folder = Path(folder)
    check_folder(folder)
    return [(name, (folder / name).stat().st_size) for name in FOLDER_FILES]


def push_folder(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    dry_run: bool = False,
    token: str | None = None,
) -> PushResult:
    """Upload a converted folder to the model repository ``repo_id`` (created if missing).

    Args:
        folder: a folder written by ``convert``.
        repo_id: ``ORG/NAME``.
        private: create the repository private (an existing repository keeps its visibility).
        revision: the branch to commit to (created from ``main`` if missing); ``None`` is ``main``.
        commit_message: defaults to "Add <architecture> converted by hrnet-backbones".
        dry_run: only list the files and sizes; nothing is sent, no token needed.
        token: a Hugging Face token; by default the one from ``HF_TOKEN`` or ``hf auth login``.
    """
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    check_repo_id(repo_id)
    files = upload_plan(folder)
    branch = revision or "main"
    if dry_run:
        return PushResult(repo_id, branch, private, tuple(files), dry_run=True)
    token = token or get_token()
    if not token:
        raise ValueError("no Hugging Face token: run `hf auth login` or set HF_TOKEN, then push again")
    config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    message = commit_message or f"Add {config['architecture']} converted by hrnet-backbones"
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        if branch != "main":
            api.create_branch(repo_id, branch=branch, repo_type="model", exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            repo_type="model",
            revision=branch,
            commit_message=message,
            allow_patterns=[name for name, _ in files],
        )
    except (HfHubHTTPError, OfflineModeIsEnabled) as e:
        raise ValueError(f"push to {repo_id} failed: {str(e).splitlines()[0]}") from None
    return PushResult(repo_id, branch, private, tuple(files), dry_run=False, commit_url=str(info.commit_url))
