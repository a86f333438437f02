"""A two-panel PNG of benchmark rows: img/s against batch size, megapixels/s against input size.

Drawn with Pillow (already a dependency) rather than matplotlib, so ``hrnet-backbones bench`` needs nothing
more than the package itself. Both x axes are logarithmic; one colour per (model, contender, precision, mode).
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from typing import Any

from PIL import Image, ImageDraw, ImageFont

__all__ = ["plot_throughput"]

_PALETTE = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
]
_PANEL_W, _PANEL_H, _MARGIN = 560, 380, 64


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def _nice_ticks(hi: float, count: int = 5) -> list[float]:
    """0 and round steps up to at least ``hi``."""
    if hi <= 0:
        return [0.0, 1.0]
    raw = hi / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return [i * step for i in range(int(math.ceil(hi / step)) + 1)]


def _label(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:g}M"
    if v >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def _panel(
    draw: ImageDraw.ImageDraw,
    origin: tuple[int, int],
    series: dict[str, list[tuple[float, float]]],
    colours: dict[str, tuple[int, int, int]],
    xlabel: str,
    title: str,
    ylabel: str,
    tick_labels: dict[float, str] | None = None,
) -> None:
    ox, oy = origin
    left, top = ox + _MARGIN, oy + 36
    right, bottom = ox + _PANEL_W - 16, oy + _PANEL_H - 48
    font, small = _font(14), _font(11)
    draw.text((left, oy + 8), title, fill=(0, 0, 0), font=font)
    draw.rectangle([left, top, right, bottom], outline=(0, 0, 0))
    points = [p for pts in series.values() for p in pts]
    if not points:
        draw.text((left + 10, top + 10), "no rows vary along this axis", fill=(90, 90, 90), font=small)
        return
    xs = sorted({p[0] for p in points})
    lo, hi = math.log(xs[0]), math.log(xs[-1])
    span = hi - lo or 1.0
    yticks = _nice_ticks(max(p[1] for p in points))

    def px(x: float) -> float:
        return left + 20 + (right - left - 40) * ((math.log(x) - lo) / span if hi > lo else 0.5)

    def py(y: float) -> float:
        return bottom - (bottom - top) * y / yticks[-1]

    for t in yticks:
        y = py(t)
        draw.line([left, y, right, y], fill=(225, 225, 225))
        draw.text((left - 6, y), _label(t), fill=(0, 0, 0), font=small, anchor="rm")
    for x in xs:
        draw.line([px(x), bottom, px(x), bottom + 4], fill=(0, 0, 0))
        text = (tick_labels or {}).get(x, _label(x))
        draw.text((px(x), bottom + 6), text, fill=(0, 0, 0), font=small, anchor="ma")
    draw.text(((left + right) / 2, bottom + 24), xlabel, fill=(0, 0, 0), font=small, anchor="ma")
    draw.text((ox + 6, (top + bottom) / 2), ylabel, fill=(0, 0, 0), font=small, anchor="lm")
    for key, pts in series.items():
        pts = sorted(pts)
        xy = [(px(x), py(y)) for x, y in pts]
        if len(xy) > 1:
            draw.line(xy, fill=colours[key], width=2)
        for x, y in xy:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colours[key])


def _series(rows: Sequence[Any], x_attr: str, fixed_attr: str) -> dict[str, list[tuple[float, float]]]:
    """Lines along ``x_attr`` for each series and each value of ``fixed_attr``, where at least two points exist.

    y is img/s along the batch axis and megapixels/s along the pixel axis (flat = time linear in pixels).
    """
    lines: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        key = f"{r.model} {r.impl} {r.precision} {r.mode}"
        fixed = r.input_size if fixed_attr == "pixels" else f"b{r.batch}"
        y = r.img_s * r.pixels / 1e6 if x_attr == "pixels" else r.img_s
        lines.setdefault(f"{key} @ {fixed}", []).append((float(getattr(r, x_attr)), float(y)))
    return {k: v for k, v in lines.items() if len({x for x, _ in v}) > 1}


def plot_throughput(rows: Iterable[Any], title: str = "") -> bytes:
    """PNG bytes: img/s vs batch size (left) and megapixels/s vs input size (right; flat = time linear in pixels),
    from rows with ``status == 'ok'``."""
    ok = [r for r in rows if getattr(r, "status", "ok") == "ok" and r.img_s]
    by_batch = _series(ok, "batch", "pixels")
    by_pixels = _series(ok, "pixels", "batch")
    keys = sorted({k.split(" @ ")[0] for k in [*by_batch, *by_pixels]} or {f"{r.model} {r.impl}" for r in ok})
    colours_by_key = {k: _PALETTE[i % len(_PALETTE)] for i, k in enumerate(keys)}
    legend_rows = math.ceil(len(keys) / 2)
    img = Image.new("RGB", (2 * _PANEL_W, _PANEL_H + 40 + 18 * legend_rows), "white")
    draw = ImageDraw.Draw(img)
    draw.text((12, 8), title or "throughput", fill=(0, 0, 0), font=_font(14))

    def colours(series: dict[str, list]) -> dict[str, tuple[int, int, int]]:
        return {k: colours_by_key.get(k.split(" @ ")[0], _PALETTE[0]) for k in series}

    _panel(draw, (0, 24), by_batch, colours(by_batch), "batch size", "throughput vs batch size", "img/s")
    sizes = {float(r.pixels): r.input_size for r in ok}
    _panel(
        draw,
        (_PANEL_W, 24),
        by_pixels,
        colours(by_pixels),
        "input H x W (log pixels)",
        "pixel rate vs input size",
        "Mpx/s",
        sizes,
    )
    font = _font(12)
    for i, k in enumerate(keys):
        x = 16 + (i % 2) * _PANEL_W
        y = _PANEL_H + 32 + 18 * (i // 2)
        draw.rectangle([x, y + 3, x + 14, y + 13], fill=colours_by_key[k])
        draw.text((x + 22, y), k, fill=(0, 0, 0), font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
