"""The pictures, drawn from plain data (dicts, tuples, arrays) into PNG bytes.

matplotlib is imported here only, inside the functions (the CLI's parser and the service's start stay light), and
always draws through the Agg backend's canvas, explicitly (no display, no pyplot state, safe in worker threads).
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

DPI = 100
LABEL_CHARS = 40  # longer category names are shortened in labels
TITLE_CHARS = 90  # a 9-inch title wraps past this many characters
LABEL_GAP, LABEL_WIDTH = 0.04, 0.15  # centre labels closer than these fractions of the plot are moved
MEMBER_COLOUR, OTHER_COLOUR, PROMPT_COLOUR = "tab:blue", "#b8bec9", "gold"
NEIGHBOUR_COLOURS = ("tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive",
                     "tab:cyan", "#8c6d31", "#393b79", "#637939", "#7b4173")


def _short(text: str, limit: int = LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _wrapped(title: str, width: int = TITLE_CHARS) -> str:
    """``title`` with each of its lines wrapped at ``width`` characters."""
    return "\n".join(part for line in title.split("\n") for part in (textwrap.wrap(line, width) or [""]))


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)  # the Agg backend, explicitly: the figure renders with it and nothing else
    return figure


def _png(figure: Any) -> bytes:
    out = io.BytesIO()
    figure.canvas.print_png(out, metadata={"Software": "unibind"})
    return out.getvalue()


def _one_or_range(values: Sequence[int]) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:,}" if lo == hi else f"{lo:,}–{hi:,}"


def accuracy_png(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """Top-1 and top-5 accuracy per strategy as bars with their bootstrap 95 % intervals as error bars. ``rows``:
    ``strategy``, ``default``, ``top1``, ``top1_ci``, ``top5``, ``top5_ci``, ``queries``, ``categories``, and
    ``kb`` (the dev benchmark's knowledge-base variant: one bar per kb, side by side, in the rows' order). The
    default rule's bars are hatched and its strategy is marked "(default)"."""
    from matplotlib.patches import Patch

    kbs = list(dict.fromkeys(r.get("kb") for r in rows))
    strategies = list(dict.fromkeys(r["strategy"] for r in rows))
    by_key = {(r.get("kb"), r["strategy"]): r for r in rows}
    defaults = {r["strategy"] for r in rows if r["default"]}
    width = 0.8 / len(kbs)
    figure = _figure(max(7.0, 2.0 + 1.3 * len(strategies) * max(1, len(kbs) * 0.8)), 5.0)
    axes = figure.subplots(1, 2, sharey=True)
    for ax, key, name in zip(axes, ("top1", "top5"), ("top-1", "top-5")):
        for g, kb in enumerate(kbs):
            colour = f"C{g}"
            for s, strategy in enumerate(strategies):
                row = by_key.get((kb, strategy))
                if row is None:
                    continue
                x = s - 0.4 + width * (g + 0.5)
                value, (lo, hi) = 100 * row[key], row[f"{key}_ci"]
                ax.bar(x, value, width * 0.92, color=colour, alpha=0.85,
                       hatch="//" if row["default"] else None, edgecolor="black" if row["default"] else colour,
                       linewidth=1.4 if row["default"] else 0.5)
                ax.errorbar(x, value, yerr=[[value - 100 * lo], [100 * hi - value]], fmt="none", ecolor="black",
                            capsize=4, linewidth=1)
                ax.annotate(f"{value:.1f}", (x, 100 * hi), textcoords="offset points", xytext=(0, 3), ha="center",
                            fontsize=8)
        crowded = len(strategies) > 4  # long names side by side run together: slant them
        ax.set_xticks(range(len(strategies)),
                      [f"{s}\n(default)" if s in defaults else s for s in strategies], fontsize=9,
                      rotation=30 if crowded else 0, ha="right" if crowded else "center",
                      rotation_mode="anchor" if crowded else "default")
        ax.set_ylim(0, 108)
        ax.set_title(f"{name} accuracy (%)")
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    axes[0].set_ylabel("accuracy (%)")
    group = next((r.get("group", "kb") for r in rows), "kb")  # kb (eval dev) or corpus (eval --corpus A --corpus B)
    handles = [Patch(facecolor=f"C{g}", alpha=0.85, label=f"{group}: {kb}") for g, kb in enumerate(kbs)
               if kb is not None]
    handles.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="the default rule"))
    figure.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
    figure.suptitle(f"Recognition accuracy per strategy: {_one_or_range([r['queries'] for r in rows])} queries, "
                    f"{_one_or_range([r['categories'] for r in rows])} categories\n"
                    f"error bars: bootstrap 95 % interval over the queries", fontsize=11)
    return _png(figure)


def confusions_png(pairs: Sequence[tuple[str, str, int]], title: str) -> bytes:
    """The confused pairs (true label, predicted top-1 label, count) as horizontal bars, the largest on top."""
    figure = _figure(9.0, 1.6 + 0.32 * max(len(pairs), 3))
    ax = figure.subplots()
    if pairs:
        labels = [f"{_short(y, 30)} → {_short(p, 30)}" for y, p, _ in pairs]
        counts = [n for _, _, n in pairs]
        ax.barh(range(len(pairs)), counts, color="tab:red", alpha=0.8)
        ax.set_yticks(range(len(pairs)), labels, fontsize=9)
        ax.invert_yaxis()
        for i, n in enumerate(counts):
            ax.annotate(str(n), (n, i), textcoords="offset points", xytext=(3, 0), va="center", fontsize=8)
        ax.set_xlim(0, max(counts) * 1.12)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel("queries of the true category (left)\nanswered with the other (right) as top-1")
        ax.grid(axis="x", alpha=0.3)
        ax.set_axisbelow(True)
    else:
        ax.text(0.5, 0.5, "no confusions: every top-1 answer is right", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
    figure.suptitle(_wrapped(title), fontsize=11)  # over the whole figure: long y labels shift the axes right
    return _png(figure)


def spread_labels(spots: np.ndarray, points: np.ndarray, *, gap: float = LABEL_GAP) -> np.ndarray:
    """``spots`` [n, 2] (label anchors, in data units) moved up, in order, until no two are closer than ``gap`` of
    the plot's height vertically while within a label's width (``LABEL_WIDTH`` of the plot's width) horizontally:
    the first stays where it is."""
    span = np.ptp(points, axis=0)  # [2]
    span = np.where(span > 0, span, 1.0)
    out = np.array(spots, dtype=np.float64)
    for i in range(1, len(out)):
        moved = True
        while moved:
            moved = False
            for j in range(i):
                dx, dy = np.abs(out[i] - out[j]) / span
                above = out[j, 1] + gap * span[1]
                # moved only upward, strictly: a label already a gap away (give or take a rounding) stays, so the
                # loop ends
                if dx < LABEL_WIDTH and dy < gap and above > out[i, 1] * (1 + 1e-12) + 1e-12 * span[1]:
                    out[i, 1] = above
                    moved = True
    return out


def centre_png(coords: np.ndarray, *, category: str, prompt: str, members: int, others: int,
               neighbours: Sequence[tuple[str, float, int]], title: str, axis_labels: tuple[str, str]) -> bytes:
    """A centre in 2-D: ``coords`` [n, 2] hold, in order, the category's ``members`` centre members, its ``others``
    other descriptions, its base prompt (one point), then each neighbour's centre members (``neighbours``: name,
    cosine of the centre means, number of members)."""
    coords = np.asarray(coords, dtype=np.float64)
    expected = members + others + 1 + sum(n for _, _, n in neighbours)
    if coords.shape != (expected, 2):
        raise ValueError(f"centre_png: {coords.shape[0]} points for {expected} (members, others, prompt, neighbours)")
    figure = _figure(11.0, 7.0)
    ax = figure.subplots()
    at = members + others + 1
    # the labels of the centres, nudged apart where centres lie close (else their names print over each other)
    groups = [(0, members)] + [(members + others + 1 + sum(n for _, _, n in neighbours[:i]), n)
                               for i, (_, _, n) in enumerate(neighbours)]
    labels = spread_labels(np.array([coords[a:a + n].mean(axis=0) for a, n in groups]), coords)
    for (name, cosine, n), colour, spot in zip(neighbours, NEIGHBOUR_COLOURS, labels[1:]):
        points = coords[at:at + n]
        ax.scatter(points[:, 0], points[:, 1], s=22, color=colour, alpha=0.6, linewidths=0,
                   label=f"{_short(name)} centre (cos {cosine:.2f})")
        ax.annotate(_short(name, 28), spot, fontsize=8, color=colour, ha="center", va="bottom", weight="bold")
        at += n
    if others:
        rest = coords[members:members + others]
        ax.scatter(rest[:, 0], rest[:, 1], s=16, color=OTHER_COLOUR, alpha=0.8, linewidths=0,
                   label=f"other descriptions of {_short(category)} ({others})")
    own = coords[:members]
    ax.scatter(own[:, 0], own[:, 1], s=42, color=MEMBER_COLOUR, edgecolors="black", linewidths=0.5,
               label=f"centre of {_short(category)} ({members} members)")
    ax.annotate(_short(category, 28), labels[0], fontsize=9, color=MEMBER_COLOUR, ha="center", va="top",
                weight="bold", textcoords="offset points", xytext=(0, -6))
    p = coords[members + others]
    ax.scatter([p[0]], [p[1]], s=260, marker="*", color=PROMPT_COLOUR, edgecolors="black", linewidths=0.8,
               label=f"base prompt “{_short(prompt, 50)}”", zorder=5)
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.grid(alpha=0.25)
    ax.set_axisbelow(True)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.set_title(_wrapped(title), fontsize=11)  # a long title wraps, not cut off
    return _png(figure)
