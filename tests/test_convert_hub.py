"""The Hugging Face Hub path: a converted folder loads through ``hf-hub:`` from a real (offline) hub cache, and
``push`` runs ``huggingface_hub``'s own ``create_repo`` / ``upload_folder`` against a fake HTTP server.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
from fixture_data import OFFICIAL

from hrnet_backbones.cli import main
from hrnet_backbones.convert import convert_checkpoint
from hrnet_backbones.convert.hub import card_for_repo, push_folder

ROOT = Path(__file__).resolve().parents[1]
POSE = OFFICIAL / "tiny" / "pose"
FILES = ["config.json", "model.safetensors", "README.md"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("converted") / "hrnet_w4.coco_pose_256x192"
    convert_checkpoint(POSE / "checkpoint.pth", out, complexity=False)
    return out


# ---------------------------------------------------------------------------------------- hf-hub: from the cache
def _populate_cache(cache: Path, repo_id: str, folder: Path, commit: str = "0" * 40) -> None:
    """The layout huggingface_hub itself writes: models--ORG--NAME/{refs/main, snapshots/<commit>/<files>}."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in FILES:
        shutil.copy(folder / name, snapshot / name)


_LOAD_OFFLINE = """
import timm, torch, hrnet_backbones
from safetensors.torch import load_file
fixture = {fixture!r}
model = timm.create_model("hf-hub:ORG/hrnet_w4.coco_pose_256x192", pretrained=True).eval()
x = load_file(fixture + "/input.safetensors")["input"]
expected = load_file(fixture + "/expected.safetensors")
with torch.no_grad():
    out = model(x)
    feats = timm.create_model("hf-hub:ORG/hrnet_w4.coco_pose_256x192", pretrained=True, features_only=True).eval()(x)
print((out - expected["output"]).abs().max().item(), (feats[1] - expected["branch0"]).abs().max().item())
print(model.pretrained_cfg["source"], model.pretrained_cfg["keypoint_names"][0])
"""


def test_hub_cache_loads_through_hf_hub_offline(folder, tmp_path):
    _populate_cache(tmp_path / "hub", "ORG/hrnet_w4.coco_pose_256x192", folder)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "home"),
        "HF_HUB_CACHE": str(tmp_path / "hub"),
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",  # this worker's share of the cores (see conftest.py)
    }
    proc = subprocess.run(
        [sys.executable, "-c", _LOAD_OFFLINE.format(fixture=str(POSE))],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    diffs, meta = proc.stdout.strip().splitlines()[-2:]
    assert all(float(d) <= 1e-5 for d in diffs.split()), proc.stdout
    assert meta == "hf-hub nose"


# ------------------------------------------------------------------------------------------ push, faked HTTP
class FakeHub:
    """Answers the Hub API calls an upload makes and records them."""

    def __init__(self):
        self.requests: list[tuple[str, str, bytes]] = []
        self.auth: dict[str, str | None] = {}

    def __call__(self, request):
        httpx = importlib.import_module(type(request).__module__.split(".")[0])
        body = request.read()
        path = request.url.path
        self.requests.append((request.method, path, body))
        self.auth[path] = request.headers.get("authorization")
        if path == "/api/repos/create":
            name = json.loads(body)
            return httpx.Response(
                200, json={"url": f"https://huggingface.co/{name['organization']}/{name['name']}"}
            )
        if path == "/api/validate-yaml":  # the library checks the model card's metadata before uploading
            return httpx.Response(200, json={"errors": [], "warnings": []})
        if "/branch/" in path:
            return httpx.Response(200, json={})
        if "/preupload/" in path:
            files = json.loads(body)["files"]
            modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
            return httpx.Response(200, json={"files": modes})
        if "/commit/" in path:
            return httpx.Response(
                200, json={"commitUrl": "https://huggingface.co/ORG/x/commit/1234", "commitOid": "1234"}
            )
        return httpx.Response(404, json={"error": f"unexpected {request.method} {path}"})

    def first(self, path: str) -> tuple[str, str, bytes]:
        return next(r for r in self.requests if r[1] == path)

    def paths(self) -> list[str]:
        return [f"{method} {path}" for method, path, _ in self.requests]

    def committed_files(self) -> dict[str, bytes]:
        body = next(b for m, p, b in self.requests if "/commit/" in p)
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        return {
            line["value"]["path"]: base64.b64decode(line["value"]["content"])
            for line in lines
            if line["key"] == "file"
        }


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """Route every request huggingface_hub makes to a ``FakeHub`` (the library's own client, fake transport)."""
    hub = FakeHub()
    httpx = importlib.import_module(type(huggingface_hub.get_session()).__module__.split(".")[0])
    huggingface_hub.set_client_factory(
        lambda: httpx.Client(transport=httpx.MockTransport(hub), follow_redirects=True)
    )
    huggingface_hub.close_session()
    monkeypatch.setenv("HF_TOKEN", "hf_fake_token_for_tests")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    # the library's own best-effort lookups may cache files under HF_HOME; keep them in the test's folder
    monkeypatch.setattr(huggingface_hub.constants, "AGENT_HARNESSES_PATH", str(tmp_path / "harnesses.json"))
    yield hub
    from huggingface_hub.utils._http import default_client_factory

    huggingface_hub.set_client_factory(default_client_factory)
    huggingface_hub.close_session()


def test_push_creates_the_repo_and_commits_the_folder(folder, fake_hub):
    result = push_folder(folder, "ORG/hrnet_w4.coco_pose_256x192", private=True, revision="v1")
    method, _, body = fake_hub.first("/api/repos/create")
    created = json.loads(body)
    assert method == "POST"
    assert (created["organization"], created["name"]) == ("ORG", "hrnet_w4.coco_pose_256x192")
    assert (created["type"], created["visibility"]) == ("model", "private")
    assert "POST /api/models/ORG/hrnet_w4.coco_pose_256x192/branch/v1" in fake_hub.paths()
    assert fake_hub.paths()[-1] == "POST /api/models/ORG/hrnet_w4.coco_pose_256x192/commit/v1"
    sent = fake_hub.committed_files()
    assert sorted(sent) == sorted(FILES)
    assert all(sent[name] == (folder / name).read_bytes() for name in FILES if name != "README.md")
    card = sent["README.md"].decode()
    assert 'timm.create_model("hf-hub:ORG/hrnet_w4.coco_pose_256x192", pretrained=True)' in card
    api_calls = [p for p in fake_hub.auth if p.startswith(("/api/repos/", "/api/models/"))]
    assert len(api_calls) == 4  # create, branch, preupload, commit
    assert {fake_hub.auth[p] for p in api_calls} == {"Bearer hf_fake_token_for_tests"}
    assert result.commit_url.endswith("/commit/1234") and result.revision == "v1" and result.private


def test_push_command_passes_private_and_revision_through(folder, fake_hub, capsys):
    assert main(["push", str(folder), "--repo-id", "ORG/model", "--private", "--revision", "v3"]) == 0
    assert json.loads(fake_hub.first("/api/repos/create")[2])["visibility"] == "private"
    assert fake_hub.paths()[-1] == "POST /api/models/ORG/model/commit/v3"
    assert sorted(fake_hub.committed_files()) == sorted(FILES)
    assert "ORG/model" in capsys.readouterr().out


def test_push_to_main_does_not_create_a_branch(folder, fake_hub):
    push_folder(folder, "ORG/model")
    assert not any("/branch/" in p for p in fake_hub.paths())
    assert fake_hub.paths()[-1] == "POST /api/models/ORG/model/commit/main"
    assert json.loads(fake_hub.first("/api/repos/create")[2])["visibility"] == "public"


def test_dry_run_lists_exactly_the_files_and_sends_nothing(folder, fake_hub, capsys):
    assert main(["push", str(folder), "--repo-id", "ORG/model", "--dry-run", "--revision", "v2"]) == 0
    out = capsys.readouterr().out
    assert fake_hub.requests == []
    assert out.splitlines()[0] == "would upload 3 files to ORG/model@v2:"
    listed = [line.split()[:2] for line in out.splitlines()[1:4]]
    card = card_for_repo((folder / "README.md").read_text(), "ORG/model").encode()
    sizes = {name: (folder / name).stat().st_size for name in FILES} | {"README.md": len(card)}
    assert listed == [[name, str(sizes[name])] for name in FILES]


def test_push_without_a_token_fails_with_one_line(folder, fake_hub, monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    assert main(["push", str(folder), "--repo-id", "ORG/model"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no Hugging Face token" in err
    assert fake_hub.requests == []


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing", "folder not found"),
        (lambda tmp: (tmp / "half").mkdir() or (tmp / "half"), "not a converted model folder"),
    ],
    ids=["missing", "not-converted"],
)
def test_push_refuses_what_is_not_a_converted_folder(make, message, tmp_path, fake_hub, capsys):
    assert main(["push", str(make(tmp_path)), "--repo-id", "ORG/model"]) == 2
    assert message in capsys.readouterr().err
    assert fake_hub.requests == []


def test_the_pushed_card_loads_the_repo_it_is_pushed_to(folder, fake_hub):
    assert (
        "hf-hub:ORG/" in (folder / "README.md").read_text()
    )  # the placeholder convert writes without --repo-id
    push_folder(folder, "my-org/pose-w4")
    card = fake_hub.committed_files()["README.md"].decode()
    assert (
        card.count('create_model("hf-hub:my-org/pose-w4", pretrained=True') == 2
    )  # the model and its features
    assert "hf-hub:ORG/" not in card
    assert (folder / "README.md").read_text() != card  # the folder itself is left as it was
