"""The digest's charts: PNG images drawn with matplotlib from the digest's ``charts`` dict.

Two stacked-bar charts of new registrations per quarter (the last five years, 20 quarters)
and one horizontal-bar chart of this period's status changes. Each comes back as a
:class:`ChartImage` (PNG bytes, pixel size, a text alternative) or ``None`` when there is
nothing to draw, so the page can say "no data" instead of showing an empty picture.

matplotlib is imported on first use only, through its object-oriented API (``Figure`` and the
Agg canvas, no pyplot: no global figure state, no GUI backend). The PNGs carry no software
or date metadata, so the same data gives the same bytes.
"""

from __future__ import annotations

import base64
import math
import os
import re
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Okabe & Ito's colour-blind-safe palette (Color Universal Design), most distinct first;
# series beyond it are summed into one grey "other" segment.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#F0E442",
           "#000000")
OTHER_COLOUR = "#A0A0A0"
BAR_COLOUR = "#0072B2"
TEXT_COLOUR = "#222222"
GRID_COLOUR = "#DDDDDD"

QUARTERS = 20  # five years of quarters
WIDTH_IN = 5.0  # narrow enough that 10 pt text stays readable scaled down to a phone
FONT = 10
LABEL_CHARS = 32  # a status-change label longer than this goes on two lines
DPI = 100      # figure inches * DPI = CSS pixels (the <img> width/height)
SCALE = 2      # PNG pixels per CSS pixel, sharp on high-density screens and in print

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_QUARTER = re.compile(r"^(\d{4})\s*-?\s*Q([1-4])$")
_lock = threading.Lock()  # matplotlib promises no thread safety: one figure at a time


@dataclass(frozen=True)
class ChartImage:
    """One rendered chart: PNG bytes, its display size in CSS pixels and a text alternative."""

    key: str
    title: str
    png: bytes
    width: int
    height: int
    alt: str

    @property
    def data_uri(self) -> str:
        """``data:image/png;base64,...`` for an ``<img src>``."""
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


def _ensure_config_dir() -> None:
    """Point MPLCONFIGDIR at a private temporary directory when matplotlib's own (under the
    home directory) cannot be written, so that importing it never fails or warns, and its font
    cache survives from one run to the next."""
    if "matplotlib" in sys.modules or os.environ.get("MPLCONFIGDIR"):
        return
    home = Path.home()
    config = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "matplotlib"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache") / "matplotlib"
    if all(_writable(d) for d in (config, cache)):
        return
    uid = os.getuid() if hasattr(os, "getuid") else 0
    private = Path(tempfile.gettempdir()) / f"tracker-matplotlib-{uid}"
    try:
        private.mkdir(mode=0o700, exist_ok=True)
        st = private.stat()
        if (hasattr(os, "getuid") and st.st_uid != uid) or not os.access(private, os.W_OK):
            raise PermissionError(private)
    except OSError:
        private = Path(tempfile.mkdtemp(prefix="tracker-matplotlib-"))
    os.environ["MPLCONFIGDIR"] = str(private)


def _writable(directory: Path) -> bool:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(directory, os.W_OK | os.X_OK)


def _text(value: Any) -> str:
    """Registry or user text as a matplotlib label: one line, no control characters, and a
    literal ``$`` (matplotlib would otherwise read ``$...$`` as mathematics)."""
    text = _CONTROL.sub(" ", str(value if value is not None else "")).strip()
    return text.replace("$", r"\$")


def _wrapped(value: Any, width: int = LABEL_CHARS) -> str:
    """A bar label on at most two lines of ``width`` characters (a long status change such
    as "Active, not recruiting → Not yet recruiting" breaks after its arrow)."""
    text = _text(value)
    if len(text) <= width:
        return text
    import textwrap

    if " → " in text:
        before, after = text.split(" → ", 1)
        lines = [before, "→ " + after]
    else:
        lines = textwrap.wrap(text, width, break_on_hyphens=False) or [text]
        lines = [lines[0], " ".join(lines[1:])] if len(lines) > 1 else lines
    return "\n".join(textwrap.shorten(line, width + 4, placeholder=" …") for line in lines)


def _plain(value: Any) -> str:
    return " ".join(_CONTROL.sub(" ", str(value if value is not None else "")).split())


def _number(value: Any) -> float:
    try:
        n = float(value)
    except (TypeError, ValueError):
        return 0.0
    return n if math.isfinite(n) and n > 0 else 0.0


def _new_figure(width_in: float, height_in: float) -> Any:
    _ensure_config_dir()
    from matplotlib.figure import Figure

    # Fixed margins rather than a layout engine: constrained layout measures every text
    # twice and costs more than the drawing.
    return Figure(figsize=(width_in, height_in), dpi=DPI, facecolor="white")


def _style_axes(ax: Any, value_axis: str) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color("#888888")
    ax.tick_params(labelsize=FONT, colors=TEXT_COLOUR, length=3)
    ax.grid(axis=value_axis, color=GRID_COLOUR, linewidth=0.8)
    ax.set_axisbelow(True)


def _rectangles(ax: Any, rects: list[tuple[float, float, float, float]], colour: str) -> None:
    """Bars as one PolyCollection of (x0, y0, x1, y1) rectangles: hundreds of Rectangle
    patches from ``ax.bar`` would cost more than the rest of the chart."""
    from matplotlib.collections import PolyCollection

    verts = [((x0, y0), (x0, y1), (x1, y1), (x1, y0)) for x0, y0, x1, y1 in rects]
    ax.add_collection(PolyCollection(verts, facecolors=colour, edgecolors="white",
                                     linewidths=0.4), autolim=False)


def _png(fig: Any) -> bytes:
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    # No "Software" (version) key and no dates: the same data gives the same bytes.
    fig.savefig(buf, format="png", dpi=DPI * SCALE, facecolor="white",
                metadata={"Software": None}, pil_kwargs={"compress_level": 3})
    return buf.getvalue()


def _x_axis(ax: Any, x: Sequence[str]) -> None:
    """Quarters: a tick between years and the year centred under its quarters. Anything
    else: about ten evenly spaced labels."""
    parsed = [_QUARTER.match(q) for q in x]
    if all(parsed):
        years: dict[str, list[int]] = {}
        for i, m in enumerate(parsed):
            years.setdefault(m.group(1), []).append(i)  # type: ignore[union-attr]
        bounds = sorted({i - 0.5 for idx in years.values() for i in (idx[0], idx[-1] + 1)})
        ax.set_xticks(bounds, labels=[""] * len(bounds))
        ax.tick_params(axis="x", which="major", length=6)
        ax.set_xticks([(idx[0] + idx[-1]) / 2 for idx in years.values()],
                      labels=list(years), minor=True)
        ax.tick_params(axis="x", which="minor", length=0, labelsize=FONT, colors=TEXT_COLOUR)
        return
    step = max(1, math.ceil(len(x) / 10))
    ticks = list(range(0, len(x), step))
    ax.set_xticks(ticks, labels=[_text(x[i]) for i in ticks])


def _series(chart: Mapping[str, Any], n: int) -> list[tuple[str, list[float]]]:
    """The chart's series cut to the last ``n`` x values, all-zero ones dropped, and the
    smallest summed into "All others" when there are more than the palette has colours."""
    raw = chart.get("series") or {}
    out: list[tuple[str, list[float]]] = []
    for name, values in raw.items():
        vals = [_number(v) for v in list(values or [])]
        vals = (vals + [0.0] * n)[:max(len(vals), n)]
        vals = vals[-n:] if n else []
        if any(vals):
            out.append((str(name), vals))
    if len(out) > len(PALETTE):
        keep = sorted(range(len(out)), key=lambda i: -sum(out[i][1]))[:len(PALETTE) - 1]
        kept = [s for i, s in enumerate(out) if i in keep]
        rest = [s for i, s in enumerate(out) if i not in keep]
        other = [sum(v) for v in zip(*(vals for _, vals in rest), strict=True)]
        out = [*kept, (f"All others ({len(rest)})", other)]
    return out


def stacked_bar_chart(key: str, chart: Mapping[str, Any]) -> ChartImage | None:
    """Stacked bars per x value (quarters; the last five years), one colour per series.
    ``None`` when there is no x axis or every value is zero."""
    title = _plain(chart.get("title")) or key.replace("_", " ").capitalize()
    x = [str(v) for v in list(chart.get("x") or [])][-QUARTERS:]
    series = _series(chart, len(x))
    if not x or not series:
        return None
    width_in = WIDTH_IN
    ncols = 2 if max(len(_plain(name)) for name, _ in series) > 16 else 3
    legend_rows = math.ceil(len(series) / ncols)
    height_in = 2.9 + 0.21 * legend_rows
    with _lock:
        from matplotlib.patches import Patch

        fig = _new_figure(width_in, height_in)
        bottom_in = 0.42 + 0.21 * legend_rows
        fig.subplots_adjust(left=0.62 / width_in, right=1 - 0.12 / width_in,
                            top=1 - 0.15 / height_in, bottom=bottom_in / height_in)
        ax = fig.add_subplot()
        _style_axes(ax, "y")
        base = [0.0] * len(x)
        handles = []
        for i, (name, vals) in enumerate(series):
            colour = OTHER_COLOUR if name.startswith("All others") else PALETTE[i % len(PALETTE)]
            _rectangles(ax, [(j - 0.4, base[j], j + 0.4, base[j] + v)
                             for j, v in enumerate(vals) if v], colour)
            base = [b + v for b, v in zip(base, vals, strict=True)]
            handles.append(Patch(facecolor=colour, label=_text(name)))
        _x_axis(ax, x)
        ax.set_xlim(-0.6, len(x) - 0.4)
        ax.set_ylim(0, max(base) * 1.05)
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel("registrations", fontsize=FONT, color=TEXT_COLOUR)
        # Below the bars, so that the plot keeps the figure's full width on a phone.
        fig.legend(handles=handles, loc="lower center", fontsize=FONT - 1, frameon=False,
                   ncols=min(ncols, len(series)), handlelength=1.2, columnspacing=1.2,
                   bbox_to_anchor=(0.5, 0.0))
        png = _png(fig)
    totals = {name: int(sum(vals)) for name, vals in series}
    alt = (f"Stacked bar chart: {title}, {x[0]} to {x[-1]}; {int(sum(totals.values()))} in "
           "total: " + "; ".join(f"{_plain(n)} {t}" for n, t in totals.items()) + ".")
    return ChartImage(key, title, png, int(width_in * DPI), int(height_in * DPI), alt)


def horizontal_bar_chart(key: str, chart: Mapping[str, Any]) -> ChartImage | None:
    """One horizontal bar per label, in the given order from the top, with its count at
    the bar's end. ``None`` when there are no labels or every count is zero."""
    title = _plain(chart.get("title")) or key.replace("_", " ").capitalize()
    pairs = [(str(lab), _number(c))
             for lab, c in zip(list(chart.get("labels") or []), list(chart.get("counts") or []),
                               strict=False)]
    pairs = [(lab, c) for lab, c in pairs if c > 0]
    if not pairs:
        return None
    width_in = WIDTH_IN
    labels = [_wrapped(lab) for lab, _ in pairs]
    two_lines = any("\n" in lab for lab in labels)
    height_in = round(0.8 + (0.46 if two_lines else 0.32) * len(pairs), 2)
    longest = max(len(line) for lab in labels for line in lab.split("\n"))
    left_in = 0.15 + 0.08 * longest  # about 0.08 in a character of 10 pt DejaVu Sans
    with _lock:
        fig = _new_figure(width_in, height_in)
        fig.subplots_adjust(left=left_in / width_in, right=1 - 0.3 / width_in,
                            top=1 - 0.12 / height_in, bottom=0.5 / height_in)
        ax = fig.add_subplot()
        _style_axes(ax, "x")
        counts = [c for _, c in pairs]
        _rectangles(ax, [(0, i - 0.33, c, i + 0.33) for i, c in enumerate(counts)], BAR_COLOUR)
        for i, c in enumerate(counts):
            ax.text(c, i, f" {c:,.0f}", va="center", ha="left", fontsize=FONT - 1,
                    color=TEXT_COLOUR)
        ax.set_yticks(range(len(pairs)), labels=labels)
        ax.tick_params(axis="y", length=0)
        ax.set_ylim(len(pairs) - 0.5, -0.5)  # the first label at the top
        ax.set_xlim(0, max(counts) * 1.12)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel("studies", fontsize=FONT, color=TEXT_COLOUR)
        png = _png(fig)
    alt = (f"Bar chart: {title}: "
           + "; ".join(f"{_plain(lab)} {c:,.0f}" for lab, c in pairs) + ".")
    return ChartImage(key, title, png, int(width_in * DPI), int(height_in * DPI), alt)


CHART_ORDER = ("registrations_by_phase", "registrations_by_group", "status_changes")


def digest_charts(charts: Mapping[str, Any] | None) -> list[tuple[str, str, ChartImage | None]]:
    """Every chart of a digest's ``charts`` dict, as ``(key, title, image or None)``: the
    three known ones first, in their order (a missing one as ``None``), then any others."""
    charts = charts or {}
    keys = [*CHART_ORDER, *(k for k in charts if k not in CHART_ORDER)]
    out: list[tuple[str, str, ChartImage | None]] = []
    for key in keys:
        chart = charts.get(key) or {}
        if not isinstance(chart, Mapping):
            chart = {}
        title = _plain(chart.get("title")) or key.replace("_", " ").capitalize()
        if "labels" in chart or key == "status_changes":
            image = horizontal_bar_chart(key, chart)
        else:
            image = stacked_bar_chart(key, chart)
        out.append((key, title, image))
    return out
