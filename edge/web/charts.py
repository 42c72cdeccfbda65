"""Inline SVG drawn on the server: an event's score timeline and a camera's sparkline. No chart library, no
script: the page renders as sent (and a test can read the lines)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

COLOURS = {"fused": "#111111", "video": "#1f77b4", "temporal": "#2ca02c", "audio": "#ff7f0e", "tampering": "#9467bd"}
_ORDER = ("video", "temporal", "audio", "tampering", "fused")


@dataclass(frozen=True)
class _Frame:
    """Data → pixel mapping of one chart."""

    x0: float
    x1: float
    top: float
    width: int
    height: int
    pad: int = 28

    def x(self, pts: float) -> float:
        span = self.x1 - self.x0 or 1.0
        return self.pad + (pts - self.x0) / span * (self.width - 2 * self.pad)

    def y(self, value: float) -> float:
        return self.height - self.pad - max(0.0, min(value, self.top)) / self.top * (self.height - 2 * self.pad)


def timeline_svg(detail: dict[str, Any], *, threshold: float, width: int = 760, height: int = 220) -> Markup:
    """The event's scores over stream time: one line per series, the threshold dashed, the event shaded from its
    start to its end (or to the last score while it is open), its peak marked."""
    series: dict[str, list[list[float]]] = detail.get("series") or {}
    points = [p for pts in series.values() for p in pts]
    if not points:
        return Markup('<p class="muted">No scores were stored for this event.</p>')  # noqa: S704 - a literal
    start, end = float(detail["start_pts"]), detail.get("end_pts")
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    top = max(threshold * 1.6, max(p[1] for p in points) * 1.1)
    f = _Frame(x0, x1, top, width, height)
    end_x = f.x(float(end)) if end is not None else f.x(x1)
    parts = [
        f'<svg class="timeline" viewBox="0 0 {width} {height}" role="img" aria-label="score timeline">',
        f'<rect class="event-span" x="{f.x(start):.1f}" y="{f.pad}" width="{max(1.0, end_x - f.x(start)):.1f}"'
        f' height="{height - 2 * f.pad}" fill="#f6d8d8"/>',
    ]
    parts += _axes(f)
    ty = f.y(threshold)
    parts.append(
        f'<line class="threshold" x1="{f.pad}" x2="{width - f.pad}" y1="{ty:.1f}" y2="{ty:.1f}" '
        f'stroke="#c00" stroke-dasharray="6 4"/><text x="{width - f.pad}" y="{ty - 4:.1f}" '
        f'text-anchor="end" class="axis">threshold {threshold:g}</text>'
    )
    legend_x = f.pad
    for name in sorted(series, key=lambda n: _ORDER.index(n) if n in _ORDER else len(_ORDER)):
        pts = series[name]
        colour = COLOURS.get(name, "#777")
        coords = " ".join(f"{f.x(p[0]):.1f},{f.y(p[1]):.1f}" for p in pts)
        stroke = 2.2 if name == "fused" else 1.3
        parts.append(
            f'<polyline class="series" data-series="{escape(name)}" fill="none" stroke="{colour}" '
            f'stroke-width="{stroke}" points="{coords}"/>'
        )
        parts.append(f'<text x="{legend_x}" y="14" fill="{colour}" class="legend">{escape(name)}</text>')
        legend_x += 12 + 8 * len(name)
    peak = detail.get("peak_pts")
    if peak is not None:
        parts.append(
            f'<line x1="{f.x(float(peak)):.1f}" x2="{f.x(float(peak)):.1f}" y1="{f.pad}" '
            f'y2="{height - f.pad}" stroke="#555" stroke-dasharray="2 3"/>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - numbers and escaped series names only


def _axes(f: _Frame) -> list[str]:
    out = [f'<line x1="{f.pad}" x2="{f.width - f.pad}" y1="{f.height - f.pad}" y2="{f.height - f.pad}" stroke="#999"/>']
    step = _nice_step(f.x1 - f.x0)
    t = (int(f.x0 / step) + 1) * step if step else f.x0
    while step and t <= f.x1:
        out.append(f'<text class="axis" x="{f.x(t):.1f}" y="{f.height - 8}" text-anchor="middle">{t:g}s</text>')
        t += step
    for v in (0.0, f.top / 2, f.top):
        out.append(f'<text class="axis" x="4" y="{f.y(v) + 4:.1f}">{v:.0f}</text>')
    return out


def _nice_step(span: float) -> float:
    for step in (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600):
        if span / step <= 8:
            return float(step)
    return span / 8


def sparkline_svg(
    points: Sequence[tuple[float, float]], *, threshold: float, width: int = 220, height: int = 40
) -> Markup:
    """A camera's recent fused score (one point per second), the threshold as a faint line."""
    if len(points) < 2:
        return Markup(f'<svg class="sparkline" viewBox="0 0 {width} {height}"></svg>')  # noqa: S704 - numbers
    t0, t1 = points[0][0], points[-1][0]
    top = max(threshold * 1.6, max(v for _, v in points))
    span = (t1 - t0) or 1.0

    def y(v: float) -> float:
        return height - 2 - min(v, top) / top * (height - 4)

    coords = " ".join(f"{(t - t0) / span * width:.1f},{y(v):.1f}" for t, v in points)
    svg = (
        f'<svg class="sparkline" viewBox="0 0 {width} {height}"><line x1="0" x2="{width}" '
        f'y1="{y(threshold):.1f}" y2="{y(threshold):.1f}" stroke="#e99" stroke-dasharray="3 3"/>'
        f'<polyline fill="none" stroke="#111" stroke-width="1.2" points="{coords}"/></svg>'
    )
    return Markup(svg)  # noqa: S704 - numbers only
