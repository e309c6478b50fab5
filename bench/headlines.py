"""The headline table at the top of BENCHMARKS.md: one row per bench, read from the newest matching row of its
section (what it measures, the ratio to the bare library call measured side by side, the figure that matters,
the date and the command that produced it). ``python bench/report.py`` writes it; ``append_rows`` refreshes it.

Pure text in, text out: the sections are parsed from the markdown the scripts append, so the table can never say
something the dated history below it does not."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

BEGIN = "<!-- headlines: written by `python bench/report.py`; do not edit by hand -->"
END = "<!-- end of headlines -->"
COLUMNS = ("bench", "what", "ratio to the bare call", "figure", "date", "command")
NONE = "—"


@dataclass(frozen=True)
class Headline:
    """Which row and cells of ``section`` make its headline: the newest row whose cells equal ``where``;
    ``ratio`` names the column with system ÷ bare (None: the bench measures no such ratio, e.g. an accuracy);
    ``figure`` names the columns shown beside it."""

    section: str
    what: str
    ratio: str | None
    figure: tuple[str, ...]
    where: Mapping[str, str] = field(default_factory=dict)


HEADLINES: tuple[Headline, ...] = (
    Headline("recognize (bench/recognize.py)", "recognise a batch of 1,024 queries, FAISS engine, C=1000, d=512",
             "ratio engine÷bare", ("queries/s",), {"engine": "faiss", "C": "1000", "d": "512", "B": "1024"}),
    Headline("single-query A/B (bench/recognize.py)", "one query, the centre rule vs the paper's max",
             "ratio rule÷paper", ("rule p50 ms",)),
    Headline("ingest (bench/ingest.py)", "ingest on PostgreSQL vs the encoder alone",
             "ratio ingest÷encoder (median)", ("ingest desc/s (median)",), {"backend": "postgres"}),
    Headline("gallery search (bench/search.py)", "gallery search, HNSW over 1M vectors, our wrapper vs bare FAISS",
             "wrapper÷bare", ("queries/s", "recall@k"), {"index": "HNSW32"}),
    Headline("gallery hydration (bench/search.py)", "fetch 100 hits' rows from 1M, our session vs a bare query",
             "session÷bare", ("p50 ms",)),
    Headline("head training (bench/heads.py)", "train a modality head, ours vs a bare torch loop",
             "ratio ours÷bare", ("val R@1",)),
    Headline("segmented search (bench/writes.py)", "search 16 segments vs one index of the same vectors",
             "ratio", ("segmented ms",)),
    Headline("write path (bench/writes.py)", "publish a write of one batch into a 1M-vector index, vs the bare FAISS "
             "add of that batch (÷ 10k: vs the same write into 10k vectors)", "÷ bare", ("batch", "publish s", "÷ 10k"),
             {"vectors": "1000000", "store": "SQLite"}),
    Headline("write path (bench/writes.py)", "the same on milvus-lite: publish a write of one batch into a 1M-vector "
             "collection, vs pymilvus's own insert of that batch", "÷ bare", ("batch", "publish s", "÷ 10k"),
             {"vectors": "1000000", "store": "SQLite + milvus-lite"}),
    Headline("encoding: Ray vs local (bench/backends.py)", "encode texts on Ray actors vs in this process",
             "ratio ray÷local", ("ray texts/s",)),
    Headline("recognition dev benchmark (bench/dev_recognition.py)", "zero-shot recognition, dev split, MiniLM",
             None, ("top-1 %", "top-5 %"), {"knowledge base": "descriptions"}),
    Headline("service load (bench/load.py)", "8 clients against the service, mixed requests", None,
             ("req/s", "p99 ms", "errors")),
    Headline("kill campaign (bench/kill.py)", "kill -9 during writes, then check the store", None,
             ("kills", "bad states")),
    Headline("DELETE beside queries (bench/writes.py)", "query latency while a corpus is deleted", None,
             ("idle p99 ms", "p99 during DELETE ms")),
    Headline("mixed writers and readers (bench/writes.py)", "concurrent writers and readers, then verify", None,
             ("lost writes", "verify")),
)


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def _cells(line: str) -> tuple[str, ...]:
    """The cells of a markdown table row (``\\|`` is a literal bar, ``\\\\`` a backslash)."""
    body = line.strip()[1:-1] if line.strip().endswith("|") else line.strip()[1:]
    cells, cell, escaped = [], [], False
    for ch in body:
        if escaped:
            cell.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "|":
            cells.append("".join(cell).strip())
            cell = []
        else:
            cell.append(ch)
    cells.append("".join(cell).strip())
    return tuple(cells)


def sections(text: str) -> dict[str, list[Table]]:
    """Every ``## section``'s tables, in file order (a section has several when its columns changed)."""
    found: dict[str, list[Table]] = {}
    current: str | None = None
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            current = line[3:].strip()
            found.setdefault(current, [])
        elif current is not None and line.startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            j = i + 2
            rows = []
            while j < len(lines) and lines[j].startswith("|"):
                rows.append(_cells(lines[j]))
                j += 1
            found[current].append(Table(_cells(line), tuple(rows)))
            i = j
            continue
        i += 1
    return found


def _newest(headline: Headline, tables: Sequence[Table]) -> dict[str, str] | None:
    """The newest row (by its date cell, then by position) of ``tables`` that has the headline's columns and
    matches ``where``."""
    needed = {"date", "command", *headline.figure, *headline.where, *([headline.ratio] if headline.ratio else [])}
    best: tuple[str, int, dict[str, str]] | None = None
    position = 0
    for table in tables:
        if not needed <= set(table.columns):
            continue
        for row in table.rows:
            position += 1
            cells = dict(zip(table.columns, row))
            if any(cells.get(k) != v for k, v in headline.where.items()):
                continue
            key = (cells["date"], position, cells)
            if best is None or key[:2] > best[:2]:
                best = key
    return None if best is None else best[2]


def headline_rows(text: str, headlines: Sequence[Headline] = HEADLINES) -> list[tuple[str, ...]]:
    """One row per headline whose section has a matching row (benches never run are left out)."""
    found = sections(text)
    rows = []
    for h in headlines:
        cells = _newest(h, found.get(h.section, []))
        if cells is None:
            continue
        ratio = cells[h.ratio] if h.ratio else NONE
        figure = ", ".join(f"{name} {cells[name]}" for name in h.figure)
        command = cells["command"].strip("`")
        rows.append((h.section.split(" (")[0], h.what, ratio or NONE, figure, cells["date"].split(" ")[0],
                     f"`{command}`"))
    return rows


def headline_block(text: str, headlines: Sequence[Headline] = HEADLINES) -> str:
    """The markdown block (between its markers) for ``text``'s sections."""
    def row(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"

    rows = headline_rows(text, headlines)
    intro = ["The newest row of each bench below; a ratio is the system's time ÷ the bare library call on the same data,",
             "measured side by side in the same run (≈ 1 is no overhead). The dated history follows."]
    lines = [BEGIN, "", "## Headlines", "", *intro, "",
             row(COLUMNS), "|" + "|".join("---" for _ in COLUMNS) + "|", *(row(r) for r in rows), "", END]
    return "\n".join(lines)


def with_headlines(text: str, headlines: Sequence[Headline] = HEADLINES) -> str:
    """``text`` with its headline block replaced, or put before the first ``## `` section when it has none."""
    block = headline_block(text, headlines)
    if BEGIN in text and END in text:
        start, end = text.index(BEGIN), text.index(END) + len(END)
        return text[:start] + block + text[end:]
    lines = text.split("\n")
    first = next((i for i, ln in enumerate(lines) if ln.startswith("## ")), len(lines))
    return "\n".join([*lines[:first], block, "", *lines[first:]])
