"""Pushing a converted folder to the Hugging Face Hub with ``huggingface_hub`` (``create_repo`` + ``create_commit``).

The token is the usual one: ``HF_TOKEN`` or the login stored by ``hf auth login``. A dry run lists exactly the files
(and sizes) an upload would send, and sends nothing.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .writer import FOLDER_FILES, check_folder

__all__ = ["PushResult", "card_for_repo", "check_repo_id", "push_folder", "upload_plan"]


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


_CARD_MODEL_ID = re.compile(r'create_model\("hf-hub:[^"@\s]+')


def card_for_repo(card: str, repo_id: str) -> str:
    """The model card with its usage code loading ``hf-hub:<repo_id>`` (in place of ``ORG/...`` or another id)."""
    return _CARD_MODEL_ID.sub(f'create_model("hf-hub:{repo_id}', card)


def _contents(folder: Path, repo_id: str | None) -> dict[str, Path | bytes]:
    """What a push sends under each name: the files as they are, the card naming ``repo_id`` when given."""
    out: dict[str, Path | bytes] = {name: folder / name for name in FOLDER_FILES}
    if repo_id is not None:
        card = (folder / "README.md").read_text(encoding="utf-8")
        out["README.md"] = card_for_repo(card, repo_id).encode("utf-8")
    return out


def upload_plan(folder: str | os.PathLike[str], repo_id: str | None = None) -> list[tuple[str, int]]:
    """``(file name, size in bytes)`` of each file a push to ``repo_id`` uploads, once ``folder`` is verified as a
    converted one (:func:`writer.check_folder`: the weights load and fit the architecture in ``config.json``)."""
    folder = Path(folder)
    check_folder(folder)
    sizes = {
        name: len(data) if isinstance(data, bytes) else data.stat().st_size
        for name, data in _contents(folder, repo_id).items()
    }
    return list(sizes.items())


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
    from huggingface_hub import CommitOperationAdd, HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    check_repo_id(repo_id)
    files = upload_plan(folder, repo_id)
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
        operations = [
            CommitOperationAdd(
                path_in_repo=name, path_or_fileobj=data if isinstance(data, bytes) else str(data)
            )
            for name, data in _contents(Path(folder), repo_id).items()
        ]
        info = api.create_commit(
            repo_id=repo_id,
            operations=operations,
            commit_message=message,
            repo_type="model",
            revision=branch,
        )
    except (HfHubHTTPError, OfflineModeIsEnabled) as e:
        raise ValueError(f"push to {repo_id} failed: {str(e).splitlines()[0]}") from None
    return PushResult(repo_id, branch, private, tuple(files), dry_run=False, commit_url=str(info.commit_url))
