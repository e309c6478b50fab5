"""bench/report.py's headline table: one row per bench from the newest matching row of its section, refreshed by
every append, and the table committed at the top of BENCHMARKS.md is the one the script writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.headlines import (
    BEGIN,
    END,
    HEADLINES,
    Headline,
    headline_rows,
    sections,
    with_headlines,
)
from bench.report import BENCHMARKS_MD, append_rows

REPO = Path(__file__).resolve().parent.parent
SPEED = Headline("speed (bench/speed.py)", "a thing vs the bare call", "ours÷bare", ("ops/s",), {"mode": "fast"})
ACCURACY = Headline("accuracy (bench/acc.py)", "top-1 of a thing", None, ("top-1 %",))
COLUMNS = ("date", "machine", "mode", "ops/s", "ours÷bare", "command")


def test_the_newest_matching_row_of_each_section_is_its_headline(tmp_path: Path) -> None:
    md = tmp_path / "BENCHMARKS.md"
    append_rows(SPEED.section, COLUMNS, [("2026-01-02 10:00 +0000", "2 cores", "fast", 100, 1.5, "python a"),
                                         ("2026-01-02 10:00 +0000", "2 cores", "slow", 10, 9.0, "python b")], md)
    append_rows(SPEED.section, COLUMNS, [("2026-01-03 10:00 +0000", "2 cores", "fast", 120, 1.25, "python c|d")], md)
    append_rows(SPEED.section, COLUMNS, [("2026-01-04 10:00 +0000", "2 cores", "slow", 5, 20.0, "python e")], md)
    # the section's columns change: a second table; the newer row is there
    append_rows(SPEED.section, (*COLUMNS[:4], "note", *COLUMNS[4:]),
                [("2026-01-05 10:00 +0000", "2 cores", "fast", 130, "x", 1.125, "python f")], md)
    append_rows(ACCURACY.section, ("date", "top-1 %", "command"), [("2026-01-01 09:00 +0000", 40.5, "`python g`")], md)
    text = md.read_text()
    assert headline_rows(text, (SPEED, ACCURACY, Headline("never run (x)", "-", None, ("y",)))) == [
        ("speed", "a thing vs the bare call", "1.125", "ops/s 130", "2026-01-05", "`python f`"),
        ("accuracy", "top-1 of a thing", "—", "top-1 % 40.5", "2026-01-01", "`python g`")]
    rows = [r for t in sections(text)[SPEED.section] for r in t.rows]
    assert ("2026-01-03 10:00 +0000", "2 cores", "fast", "120", "1.250", "python c|d") in rows  # a bar in a cell


def test_the_block_sits_above_the_history_and_is_replaced_in_place(tmp_path: Path) -> None:
    md = tmp_path / "BENCHMARKS.md"
    append_rows("speed (bench/speed.py)", COLUMNS, [("2026-01-02 10:00 +0000", "2 cores", "fast", 1, 2.0, "c")], md)
    text = md.read_text()
    assert text.index(BEGIN) < text.index(END) < text.index("## speed (bench/speed.py)")  # appends refresh it
    once = with_headlines(text, (SPEED,))
    assert with_headlines(once, (SPEED,)) == once and once.count(BEGIN) == 1
    assert "| speed | a thing vs the bare call | 2.000 | ops/s 1 | 2026-01-02 | `c` |" in once


def test_benchmarks_md_opens_with_the_table_the_script_writes(tmp_path: Path) -> None:
    text = BENCHMARKS_MD.read_text()
    assert with_headlines(text) == text, "run `python bench/report.py`: the headline table is stale"
    assert text.index(BEGIN) < text.index("\n## ", text.index(END))
    found = sections(text)
    assert all(h.section in found for h in HEADLINES), [h.section for h in HEADLINES if h.section not in found]
    assert len(headline_rows(text)) == len(HEADLINES)  # every bench named has a row
    copy = tmp_path / "copy.md"
    copy.write_text(text.replace(text[text.index(BEGIN):text.index(END) + len(END)], BEGIN + "\n\nold\n\n" + END))
    done = subprocess.run([sys.executable, str(REPO / "bench" / "report.py"), "--file", str(copy)],
                          capture_output=True, text=True, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr
    assert copy.read_text() == text
