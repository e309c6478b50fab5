"""The JSON that ``unibind eval recognition|dev|zero-shot --json`` prints, read back for the pictures: checked field by
field, every error naming the file (``-``: standard input), the row and the field. A zero-shot record (CLIP_benchmark's
layout: ``metrics``, ``intervals``, one per classifier) is read as a row of its classifier."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unibind.schema.errors import InvalidInput, NotFound

STDIN = "-"
WHAT = "the output of `unibind eval recognition|dev --json`"


@dataclass(frozen=True)
class EvalResult:
    """One row of an eval: one strategy (on one knowledge-base variant, ``kb``, for the dev benchmark, or on one
    corpus (set) for ``eval recognition --corpus A --corpus B``)."""

    strategy: str
    default: bool
    queries: int
    categories: int
    top1: float
    top1_ci: tuple[float, float]
    top5: float
    top5_ci: tuple[float, float]
    kb: str | None = None
    confusions: tuple[tuple[str, str, int], ...] | None = None  # None: the JSON predates the field
    group: str = "kb"  # what ``kb`` names: the dev benchmark's "kb", or eval recognition --corpus's "corpus"

    @property
    def name(self) -> str:
        return f"{self.strategy} on {self.group} {self.kb}" if self.kb is not None else self.strategy


def _text(source: str | Path) -> tuple[str, str]:
    """(label, text) of a file, or of standard input for ``-``."""
    if str(source) == STDIN:
        return "<stdin>", sys.stdin.read()
    path = Path(source)
    if not path.is_file():
        raise NotFound(f"eval results file not found: {path}")
    try:
        return str(path), path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise InvalidInput(f"{path}: not valid UTF-8 (byte {e.start})") from e


def _fraction(where: str, row: dict[str, Any], key: str) -> float:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value <= 1) or math.isnan(value):
        raise InvalidInput(f"{where}: field {key!r} must be a number in [0, 1], got {value!r}")
    return float(value)


def _interval(where: str, row: dict[str, Any], key: str) -> tuple[float, float]:
    value = row.get(key)
    if not isinstance(value, list) or len(value) != 2:
        raise InvalidInput(f"{where}: field {key!r} must be a [lower, upper] pair, got {value!r}")
    lo, hi = (_fraction(where, {key: v}, key) for v in value)
    if lo > hi:
        raise InvalidInput(f"{where}: field {key!r} has lower {lo} > upper {hi}")
    return lo, hi


def _count(where: str, row: dict[str, Any], key: str, minimum: int = 0) -> int:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInput(f"{where}: field {key!r} must be an integer >= {minimum}, got {value!r}")
    return value


def _confusions(where: str, value: Any) -> tuple[tuple[str, str, int], ...]:
    if not isinstance(value, list):
        raise InvalidInput(f"{where}: field 'confusions' must be a list, got {type(value).__name__}")
    out = []
    for j, pair in enumerate(value):
        at = f"{where}: confusions[{j}]"
        if not isinstance(pair, dict):
            raise InvalidInput(f"{at} must be an object with label, predicted and count")
        for key in ("label", "predicted"):
            if not isinstance(pair.get(key), str) or not pair[key]:
                raise InvalidInput(f"{at}: field {key!r} must be a non-empty string")
        out.append((pair["label"], pair["predicted"], _count(at, pair, "count", 1)))
    return tuple(out)


def _zero_shot_row(where: str, row: dict[str, Any]) -> dict[str, Any]:
    """A zero-shot record as an eval row: its classifier is the strategy, acc1 / acc5 and their intervals the top-1 /
    top-5."""
    metrics, intervals = row.get("metrics"), row.get("intervals")
    for key, value in (("metrics", metrics), ("intervals", intervals)):
        if not isinstance(value, dict):
            raise InvalidInput(f"{where}: field {key!r} must be an object with acc1 and acc5")
    assert isinstance(metrics, dict) and isinstance(intervals, dict)
    out = {k: row[k] for k in ("default", "queries", "categories") if k in row}
    out["strategy"] = row.get("classifier")
    for ours, theirs in (("top1", "acc1"), ("top5", "acc5")):
        if theirs in metrics:
            out[ours] = metrics[theirs]
        if theirs in intervals:
            out[f"{ours}_ci"] = intervals[theirs]
    return out


def parse_results(data: Any, label: str) -> list[EvalResult]:
    """The rows of eval JSON ``data`` (read from ``label``)."""
    if not isinstance(data, list) or not data:
        raise InvalidInput(f"{label}: not {WHAT}: expected a non-empty JSON list of rows, got "
                           f"{'an empty list' if data == [] else type(data).__name__}")
    rows = []
    for i, row in enumerate(data):
        where = f"{label}: row {i}"
        if not isinstance(row, dict):
            raise InvalidInput(f"{where}: not {WHAT}: each row must be a JSON object")
        if "metrics" in row and "classifier" in row:
            row = _zero_shot_row(where, row)
        missing = [k for k in ("strategy", "default", "queries", "categories", "top1", "top1_ci", "top5", "top5_ci")
                   if k not in row]
        if missing:
            raise InvalidInput(f"{where}: not {WHAT}: missing field {missing[0]!r}")
        if not isinstance(row["strategy"], str) or not row["strategy"]:
            raise InvalidInput(f"{where}: field 'strategy' must be a non-empty string")
        if not isinstance(row["default"], bool):
            raise InvalidInput(f"{where}: field 'default' must be true or false")
        group = "kb" if "kb" in row or "corpus" not in row else "corpus"  # rows of several corpora side by side
        kb = row.get(group)
        if kb is not None and (not isinstance(kb, str) or not kb):
            raise InvalidInput(f"{where}: field {group!r} must be a non-empty string")
        rows.append(EvalResult(
            strategy=row["strategy"], default=row["default"], queries=_count(where, row, "queries", 1),
            categories=_count(where, row, "categories", 1), top1=_fraction(where, row, "top1"),
            top1_ci=_interval(where, row, "top1_ci"), top5=_fraction(where, row, "top5"),
            top5_ci=_interval(where, row, "top5_ci"), kb=kb,
            confusions=_confusions(where, row["confusions"]) if "confusions" in row else None, group=group))
    if len({(r.kb is None, r.group) for r in rows}) > 1:
        raise InvalidInput(f"{label}: field {rows[0].group!r} is on some rows and not on others")
    seen = set()
    for i, r in enumerate(rows):
        if (r.kb, r.strategy) in seen:
            raise InvalidInput(f"{label}: row {i}: strategy {r.strategy!r} appears twice"
                               f"{f' for {r.group} {r.kb!r}' if r.kb is not None else ''}")
        seen.add((r.kb, r.strategy))
    return rows


def read_results(source: str | Path) -> tuple[str, list[EvalResult]]:
    """(label, rows) of an eval's JSON in a file, or on standard input for ``-``."""
    label, text = _text(source)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidInput(f"{label}: not {WHAT}: invalid JSON at line {e.lineno} ({e.msg})") from e
    return label, parse_results(data, label)


def pick_row(rows: list[EvalResult], label: str, *, strategy: str | None = None, kb: str | None = None) -> EvalResult:
    """The row of ``strategy`` (default: the default rule's row, else the first) on knowledge base ``kb`` (dev
    benchmark JSON; default: the first kb). Unknown names are NotFound, listing the names there are."""
    kbs = list(dict.fromkeys(r.kb for r in rows))
    group = rows[0].group
    if kb is not None:
        if kbs == [None]:
            raise InvalidInput(f"{label}: --kb goes with the JSON of `unibind eval dev` or `eval recognition` with "
                               f"several --corpus; these rows have no field 'kb' or 'corpus'")
        if kb not in kbs:
            raise NotFound(f"{label}: no rows for {group} {kb!r} ({group}: {', '.join(map(str, kbs))})")
    chosen = [r for r in rows if r.kb == (kb if kb is not None else kbs[0])]
    if strategy is None:
        return next((r for r in chosen if r.default), chosen[0])
    for r in chosen:
        if r.strategy == strategy:
            return r
    import difflib

    names = [r.strategy for r in chosen]
    close = difflib.get_close_matches(strategy, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise NotFound(f"{label}: no row for strategy {strategy!r}{f' on {group} {chosen[0].kb!r}' if chosen[0].kb else ''}"
                   f" (strategies: {', '.join(names)}){hint}")
