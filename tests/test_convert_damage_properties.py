"""Property (hypothesis): a checkpoint truncated or corrupted at a random offset either fails cleanly, on the CLI's
error path (a ``ValueError``/``OSError`` whose message is one line), or converts to exactly the original weights.

Zip files carry CRC-32 checksums, which the converter verifies, so there the property holds for truncation and
corruption alike. The legacy ``torch.save`` format and safetensors carry no checksum: a byte changed inside tensor
data cannot be told from a real weight by anyone, so for them corruption is held to the weaker promise that it
fails cleanly or converts (never a traceback), and truncation to the full one.

By default each test runs the same 12 examples (derandomized, to keep the suite fast and stable);
``HRNET_DAMAGE_EXAMPLES=N`` runs N random ones instead, for a longer search.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import torch
from fixture_data import OFFICIAL
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save

from hrnet_backbones.convert import convert_state_dict, read_checkpoint

POSE_CKPT = OFFICIAL / "tiny" / "pose" / "checkpoint.pth"
EXAMPLES = int(os.environ.get("HRNET_DAMAGE_EXAMPLES", "12"))
DAMAGE = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="HRNET_DAMAGE_EXAMPLES" not in os.environ,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _file_bytes(fmt: str) -> bytes:
    if fmt == "zip":
        return POSE_CKPT.read_bytes()
    sd = torch.load(POSE_CKPT, map_location="cpu", weights_only=True)
    if fmt == "safetensors":
        return save({k: v.contiguous() for k, v in sd.items()})
    buf = io.BytesIO()
    torch.save(sd, buf, _use_new_zipfile_serialization=False)
    return buf.getvalue()


FORMATS = {fmt: _file_bytes(fmt) for fmt in ("zip", "legacy", "safetensors")}
SUFFIX = {"zip": ".pth", "legacy": ".pth", "safetensors": ".safetensors"}


def _convert(path: Path) -> dict[str, torch.Tensor]:
    ckpt = read_checkpoint(path)
    return convert_state_dict(ckpt.state_dict, meta=ckpt.meta, source_name=ckpt.path.name).state_dict


ORIGINAL = {fmt: None for fmt in FORMATS}


def _original(fmt: str, tmp: Path) -> dict[str, torch.Tensor]:
    if ORIGINAL[fmt] is None:
        path = tmp / f"original{SUFFIX[fmt]}"
        path.write_bytes(FORMATS[fmt])
        ORIGINAL[fmt] = _convert(path)
    return ORIGINAL[fmt]


def _outcome(data: bytes, fmt: str, tmp: Path) -> dict[str, torch.Tensor] | None:
    """The converted weights, or None when the conversion failed the clean way (anything else propagates)."""
    path = tmp / f"damaged{SUFFIX[fmt]}"
    path.write_bytes(data)
    try:
        return _convert(path)
    except (ValueError, OSError) as e:  # what the CLI prints as one line with exit status 2
        assert "\n" not in str(e).strip(), str(e)
        assert str(e).strip(), "an error without a message"
        return None


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


def _corrupt(data: bytes, offset: int, values: bytes) -> bytes:
    out = bytearray(data)
    for i, v in enumerate(values):
        if offset + i < len(out):
            out[offset + i] = v
    return bytes(out)


@pytest.mark.parametrize("fmt", list(FORMATS))
@DAMAGE
@given(fraction=st.floats(0, 1, exclude_max=True))
def test_a_truncated_checkpoint_fails_cleanly_or_converts_unchanged(fmt, fraction, tmp_path):
    data = FORMATS[fmt]
    result = _outcome(data[: int(fraction * len(data))], fmt, tmp_path)
    assert result is None or _same(result, _original(fmt, tmp_path))


@DAMAGE
@given(fraction=st.floats(0, 1, exclude_max=True), values=st.binary(min_size=1, max_size=8))
def test_a_corrupted_zip_checkpoint_fails_cleanly_or_converts_unchanged(fraction, values, tmp_path):
    data = FORMATS["zip"]
    damaged = _corrupt(data, int(fraction * len(data)), values)
    result = _outcome(damaged, "zip", tmp_path)
    assert result is None or _same(result, _original("zip", tmp_path))


@pytest.mark.parametrize("fmt", ["legacy", "safetensors"])
@DAMAGE
@given(fraction=st.floats(0, 1, exclude_max=True), values=st.binary(min_size=1, max_size=8))
def test_a_corrupted_checkpoint_without_checksums_never_fails_with_a_traceback(
    fmt, fraction, values, tmp_path
):
    data = FORMATS[fmt]
    _outcome(_corrupt(data, int(fraction * len(data)), values), fmt, tmp_path)
