"""Shared pieces of the benchmark scripts: medians, the machine's description, a plain-text table for
stdout, and appending dated rows to a section's markdown table in BENCHMARKS.md, whose headline table (the newest
figure of each bench, bench/headlines.py) is refreshed with every append.

``python bench/report.py`` rewrites the headline table from the rows already there."""

from __future__ import annotations

import fcntl
import logging
import os
import shlex
import statistics
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repo root first, so ``bench`` imports
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.headlines import with_headlines

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS_MD = REPO_ROOT / "BENCHMARKS.md"
BENCHMARKS_INTRO = (
    "# Benchmarks\n"
    "\n"
    "Rows are appended by the scripts in `bench/` (one section per script); do not edit them by hand.\n"
    "The machines are shared and noisy, so each row gives medians over several repeats, and ratios\n"
    "measured side by side in the same run (the system's time ÷ the bare library call on the same data)\n"
    "matter more than absolute rates. \"machine\" is `os.cpu_count()` cores and the GPU torch sees.\n"
    "A benchmark is not a test: the tests never assert timings.\n"
)


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def machine() -> str:
    """``"<cores> cores, <GPU name>"`` or ``"<cores> cores, no GPU"``."""
    cores = os.cpu_count() or 0
    part = f"{cores} cores"
    try:
        usable = len(os.sched_getaffinity(0))
        if usable != cores:
            part += f" ({usable} usable)"
    except (AttributeError, OSError):
        pass
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except Exception as e:  # noqa: BLE001 - a broken CUDA runtime just means "no GPU" here
        log.debug("GPU probe failed: %s", e)
    return f"{part}, {gpu}"


def now() -> str:
    """Local date and time to the minute, with the UTC offset."""
    return datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %z")


def command_line(script: str) -> str:
    """How this run was started, as a copy-pasteable command (``python <script> <args>``)."""
    return shlex.join(["python", script, *sys.argv[1:]])


def text_table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table with aligned columns (numbers right-aligned)."""
    cells = [[str(c) for c in columns]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    numeric = [all(_is_number(row[i]) for row in rows) if rows else False for i in range(len(columns))]

    def line(r: list[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(r, widths, numeric)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def _md_cell(v: object) -> str:
    return _fmt(v).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_row(values: Sequence[object]) -> str:
    return "| " + " | ".join(_md_cell(v) for v in values) + " |"


def _with_rows(text: str, section: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """``text`` with ``rows`` added to the table of ``## section`` (created, with the table, when missing)."""
    header = _md_row(columns)
    new_rows = [_md_row(r) for r in rows]
    table = [header, "|" + "|".join("---" for _ in columns) + "|", *new_rows]
    if not text.strip():
        text = BENCHMARKS_INTRO
    lines = text.rstrip("\n").split("\n")
    heading = f"## {section}"
    try:
        start = next(i for i, ln in enumerate(lines) if ln.strip() == heading)
    except StopIteration:
        return "\n".join([*lines, "", heading, "", *table]) + "\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    # the section's last table with the same header gets the rows after its last line
    i, last_match = start + 1, None
    while i < end:
        if lines[i].startswith("|"):
            j = i
            while j < end and lines[j].startswith("|"):
                j += 1
            if lines[i].strip() == header:
                last_match = j
            i = j
        else:
            i += 1
    if last_match is not None:
        return "\n".join([*lines[:last_match], *new_rows, *lines[last_match:]]) + "\n"
    # no table with these columns yet (e.g. the columns changed): a new table at the section's end
    body_end = end
    while body_end > start + 1 and not lines[body_end - 1].strip():
        body_end -= 1
    rest = lines[end:]
    return "\n".join([*lines[:body_end], "", *table, *([""] + rest if rest else [])]) + "\n"


def append_rows(
    section: str, columns: Sequence[str], rows: Sequence[Sequence[object]], path: Path = BENCHMARKS_MD
) -> Path:
    """Append ``rows`` to the markdown table under ``## section`` in ``path``, creating the file (with its
    ``# Benchmarks`` header), the section or the table when missing; other sections are kept as they are.
    The file is locked while it is rewritten, so benchmarks finishing together do not lose rows."""
    if any(len(r) != len(columns) for r in rows):
        raise ValueError(f"every row needs {len(columns)} values ({', '.join(columns)})")
    _rewrite(path, lambda text: with_headlines(_with_rows(text, section, columns, rows)))
    log.info("appended %d row(s) to %s, section %r", len(rows), path, section)
    return path


def refresh_headlines(path: Path = BENCHMARKS_MD) -> Path:
    """Rewrite the headline table of ``path`` from its sections' rows (under the same lock as an append)."""
    _rewrite(path, with_headlines, create=False)
    return path


def _rewrite(path: Path, change: Callable[[str], str], *, create: bool = True) -> None:
    """Replace the text of ``path`` by ``change(text)``, under an exclusive lock, fsynced (``create``: a missing
    file starts empty)."""
    with open(path, "a+" if create else "r+", encoding="utf-8") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            f.seek(0)
            updated = change(f.read())
            f.seek(0)
            f.truncate()
            f.write(updated)
            f.flush()
            os.fsync(f.fileno())
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Rewrite the headline table at the top of BENCHMARKS.md from "
                                                 "the newest row of each bench's section.")
    parser.add_argument("--file", type=Path, default=BENCHMARKS_MD, help="the benchmarks file (default: %(default)s)")
    args = parser.parse_args(argv)
    if not args.file.is_file():
        print(f"report: no such file: {args.file}", file=sys.stderr)
        return 2
    refresh_headlines(args.file)
    print(f"wrote the headline table of {args.file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
