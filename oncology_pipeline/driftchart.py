"""Drift as a picture: one small bar chart per feature, the reference share of each score beside the current one.

`drift_svg` returns a standalone SVG document (deterministic bytes, no dependencies) that works inline and as an
`<img>`: small multiples in a 3-column grid, a drifting feature's panel tinted and framed, hover text on each score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from oncology_model.datamodel import SCORE_MAX, SCORE_MIN

SCORES = tuple(range(SCORE_MIN, SCORE_MAX + 1))
REFERENCE_COLOUR = "#a6a6a6"  # grey and blue stay apart for every kind of colour blindness
CURRENT_COLOUR = "#1f5fbf"
DRIFT_COLOUR = "#c62828"  # drift is also said in words and by a thicker frame, never by colour alone
DRIFT_TINT = "#fdf1f0"
FONT = "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif"

COLUMNS, MARGIN, GAP = 3, 24, 16
PANEL_W, PANEL_H = 368, 232
PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM = 46, 14, 56, 28  # the bars' area inside a panel
PLOT_W, PLOT_H = PANEL_W - PLOT_LEFT - PLOT_RIGHT, PANEL_H - PLOT_TOP - PLOT_BOTTOM
TITLE_SIZE, TITLE_LINE, TITLE_CHAR = 16, 22, 10.0  # px; TITLE_CHAR: a bold character's mean width, for wrapping
STEPS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5)  # gridline spacing, as a share
MAX_GRIDLINES = 5


@dataclass(frozen=True)
class FeatureCounts:
    """Rows at each score 1..10 of one feature, in the reference (training) data and in the current window."""

    name: str
    reference: Sequence[int]
    current: Sequence[int]
    drifts: bool
    note: str = ""  # e.g. "adj. p 0.0001, PSI 0.31 > 0.05"

    def __post_init__(self) -> None:
        for side, counts in (("reference", self.reference), ("current", self.current)):
            if len(counts) != len(SCORES) or any(c < 0 for c in counts):
                raise ValueError(
                    f"{self.name}: {side} needs {len(SCORES)} counts >= 0 (values {SCORE_MIN}..{SCORE_MAX}), "
                    f"got {list(counts)}"
                )


def shares(counts: Sequence[int]) -> list[float] | None:
    """Each count as a share of the total; None when there are no rows."""
    total = sum(counts)
    return [c / total for c in counts] if total else None


def axis_top(largest: float) -> tuple[float, float]:
    """The share axis's top and gridline step: the smallest step that covers `largest` in a few gridlines."""
    for step in STEPS:
        intervals = max(1, math.ceil(largest / step - 1e-9))
        if intervals <= MAX_GRIDLINES:
            return intervals * step, step
    return 1.0, STEPS[-1]


def drift_svg(features: Sequence[FeatureCounts], *, title: str) -> str:
    """The SVG document: the title, a legend, and one panel per feature (3 per row)."""
    columns = max(1, min(COLUMNS, len(features)))
    width = 2 * MARGIN + columns * PANEL_W + (columns - 1) * GAP
    lines = _wrap(title, int((width - 2 * MARGIN) / TITLE_CHAR))
    legend_y = MARGIN + 12 + TITLE_LINE * len(lines) + 6
    panels_y = legend_y + 18
    rows = math.ceil(len(features) / columns)
    height = panels_y + rows * PANEL_H + max(0, rows - 1) * GAP + MARGIN
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" font-family="{FONT}" fill="#222">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text class="title" x="{MARGIN}" y="{MARGIN + 12}" font-size="{TITLE_SIZE}" font-weight="600">'
        + "".join(f'<tspan x="{MARGIN}" dy="{TITLE_LINE if i else 0}">{escape(t)}</tspan>' for i, t in enumerate(lines))
        + "</text>",
        *_legend(MARGIN, legend_y),
    ]
    for i, feature in enumerate(features):
        row, column = divmod(i, columns)
        parts += _panel(feature, MARGIN + column * (PANEL_W + GAP), panels_y + row * (PANEL_H + GAP))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _wrap(text: str, width: int) -> list[str]:
    """Greedy word wrap at `width` characters (a single longer word stays whole)."""
    lines: list[str] = []
    for word in text.split(" "):
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]


def _legend(x: int, y: int) -> list[str]:
    """Two swatches and what the bars mean."""
    return [
        f'<g class="legend" font-size="12.5" fill="#444" transform="translate({x},{y})">',
        f'<rect x="0" y="-10" width="12" height="12" rx="2" fill="{REFERENCE_COLOUR}"/>',
        '<text x="18" y="0">reference (training data)</text>',
        f'<rect x="190" y="-10" width="12" height="12" rx="2" fill="{CURRENT_COLOUR}"/>',
        '<text x="208" y="0">current window</text>',
        '<text x="340" y="0" fill="#777">bars: share of rows at each score, 1 to 10; a red frame marks drift</text>',
        "</g>",
    ]


def _panel(feature: FeatureCounts, x: int, y: int) -> list[str]:
    """One feature: frame, heading, note, share axis, and the bar pairs with score labels."""
    ref, cur = shares(feature.reference), shares(feature.current)
    missing = [side for side, values in (("reference", ref), ("current", cur)) if values is None]
    note = " · ".join(filter(None, (feature.note, f"no {missing[0]} rows" if len(missing) == 1 else "")))
    frame = (
        f'fill="{DRIFT_TINT}" stroke="{DRIFT_COLOUR}" stroke-width="2"'
        if feature.drifts
        else 'fill="#ffffff" stroke="#d4d4d4" stroke-width="1"'
    )
    verdict = (
        f'<tspan fill="{DRIFT_COLOUR}" font-weight="700">drift</tspan>'
        if feature.drifts
        else '<tspan fill="#777">no drift</tspan>'
    )
    parts = [
        f'<g class="panel{" drift" if feature.drifts else ""}" data-feature={quoteattr(feature.name)} '
        f'transform="translate({x},{y})">',
        f'<rect class="frame" x="0.5" y="0.5" width="{PANEL_W - 1}" height="{PANEL_H - 1}" rx="6" {frame}/>',
        f'<text class="heading" x="14" y="24" font-size="14"><tspan font-weight="600">{escape(feature.name)}'
        f'</tspan><tspan fill="#999"> — </tspan>{verdict}</text>',
        *([f'<text class="note" x="14" y="41" font-size="11.5" fill="#555">{escape(note)}</text>'] if note else []),
        f'<g transform="translate({PLOT_LEFT},{PLOT_TOP})" font-size="11">',
    ]
    if ref is None and cur is None:
        parts += [
            f'<line x1="0" x2="{PLOT_W}" y1="{PLOT_H}" y2="{PLOT_H}" stroke="#9a9a9a"/>',
            f'<text class="empty" x="{PLOT_W / 2:g}" y="{PLOT_H / 2:g}" text-anchor="middle" font-size="13" '
            'fill="#777" font-style="italic">no rows</text>',
        ]
        top = 1.0
    else:
        top, step = axis_top(max((*(ref or ()), *(cur or ()))))
        parts += _axis(top, step)
    return [*parts, *_bars(feature, ref, cur, top), "</g>", "</g>"]


def _axis(top: float, step: float) -> list[str]:
    """Horizontal gridlines with % labels, from the baseline at 0 up to `top`."""
    parts = []
    for k in range(round(top / step) + 1):
        gy = _f(PLOT_H - k * step / top * PLOT_H)
        parts += [
            f'<line x1="0" x2="{PLOT_W}" y1="{gy}" y2="{gy}" stroke="{"#9a9a9a" if k == 0 else "#e8e8e8"}"/>',
            f'<text x="-6" y="{gy}" dy="0.35em" text-anchor="end" fill="#666">{k * step * 100:.0f} %</text>',
        ]
    return parts


def _bars(feature: FeatureCounts, ref: list[float] | None, cur: list[float] | None, top: float) -> list[str]:
    """Per score: a group with hover text, the reference and current bars (a side without rows has none), a label."""
    slot = PLOT_W / len(SCORES)
    bar_w = slot * 0.36
    parts = []
    for i, score in enumerate(SCORES):
        centre = slot * (i + 0.5)
        hover = (
            f"{feature.name} = {score}: reference {_share_text(feature.reference, ref, i)}, "
            f"current {_share_text(feature.current, cur, i)}"
        )
        parts += [
            f'<g class="score" data-score="{score}"><title>{escape(hover)}</title>',
            f'<rect class="hit" x="{_f(slot * i)}" y="0" width="{_f(slot)}" height="{PLOT_H}" fill="none" '
            'pointer-events="all"/>',
        ]
        for side, values, left, colour in (
            ("reference", ref, centre - bar_w - 0.75, REFERENCE_COLOUR),
            ("current", cur, centre + 0.75, CURRENT_COLOUR),
        ):
            if values is not None:
                h = values[i] / top * PLOT_H
                parts.append(
                    f'<rect class="bar {side}" data-share="{values[i]:.6f}" x="{_f(left)}" y="{_f(PLOT_H - h)}" '
                    f'width="{_f(bar_w)}" height="{_f(h)}" fill="{colour}"/>'
                )
        parts += [
            "</g>",
            f'<text x="{_f(centre)}" y="{PLOT_H + 16}" text-anchor="middle" fill="#555">{score}</text>',
        ]
    return parts


def _share_text(counts: Sequence[int], values: list[float] | None, i: int) -> str:
    """'5.1 % (35 of 683)', or 'no rows'."""
    return "no rows" if values is None else f"{values[i] * 100:.1f} % ({counts[i]} of {sum(counts)})"


def _f(value: float) -> str:
    """A coordinate with two decimals at most, the same bytes for the same value."""
    return f"{value:.2f}".rstrip("0").rstrip(".")
