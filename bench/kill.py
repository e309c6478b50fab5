"""Kill campaign: real ``unibind`` processes SIGKILLed at random moments, each followed by a user's checks.

    .venv/bin/python bench/kill.py [--n 50] [--db postgresql+psycopg://postgres@127.0.0.1:5432/test]
                                   [--seed 0] [--ops compaction,vacuum] [--vectors milvus-lite|milvus://HOST:PORT]
                                   [--no-append]

Setup, in a temp data folder with SQLite (or, with ``--db``, a fresh schema on that PostgreSQL server, dropped
afterwards): corpora ``base`` and ``victim`` and three spare ones ingested with MiniLM, an ``audio`` modality with
head versions 1 (active) and 2, and a 400-item audio gallery. Then each operation runs once to completion, timed
from process start (its *window*), and the time a process needs to start and open the store is measured.

Each of the ``--n`` trials picks an operation at random — ``ingest`` (a new 800-description corpus: killed while it
encodes, writes its rows, writes its segment or publishes), ``replace`` (``victim`` by a corpus of another size),
``delete`` (a spare or earlier corpus), ``gallery add`` (2,000 audio items), ``head activation`` (the inactive head
version, which re-projects the gallery into one new segment), ``compaction`` (``index compact --full``: every index
merged into one segment) or ``vacuum`` (``index compact`` after a corpus was deleted and items removed while a
reader held the older version, so the vacuum has rows and segments to remove) — starts it as a real
``python -m unibind.retrieval.cli.main`` process and sends SIGKILL at a moment drawn uniformly between half the start-up time
and the end of the operation's window. A process that ended first counts as *completed*, not as a kill.

After each trial the checks a user would make, through the CLI's own code: ``corpus list`` (only complete corpora
visible, a killed ingest shown as ``interrupted``, never ``ingesting``), exact description counts against the
store's rows, ``index verify`` and ``gallery verify`` (when one fails, ``index rebuild`` / ``gallery rebuild`` must
repair it: a *repair needed*), ``head list`` (both versions there, one active), ``gallery list`` (every earlier
item still there, the added ones all or none), ``search --target descriptions`` for the killed ingest's text (no hit from an
unpublished corpus). An operation must have happened whole or not at all; anything else is a *bad state*. At the
end one more write runs, and nothing dead may remain: no pending corpus, no index or head file that no record
names.

With ``--vectors milvus-lite`` the indexes live in Milvus: a ``milvus-lite server`` on a free loopback port (several
processes share it), or with ``--vectors milvus://HOST:PORT`` a Milvus server. Killed processes then die in the
middle of inserts and deletes of Milvus rows as well, and the final count also looks inside Milvus: rows whose
segment token no record names (*orphan rows*), and collections of the store that no record names.

Prints a table and appends a row to BENCHMARKS.md (section "kill campaign (bench/kill.py)") unless --no-append.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the repo root first

from bench.report import append_rows, command_line, machine, now, text_table  # noqa: E402

log = logging.getLogger("bench.kill")

SECTION = "kill campaign (bench/kill.py)"
OPS = ("ingest", "replace", "delete", "gallery add", "head activation", "compaction", "vacuum")
D_IN = 16  # the audio features' width
DIM = 384  # MiniLM
COLUMNS = ("backend", "trials", "kills", "completed", "kills per op", "happened / not", "repairs needed",
           "bad states", "dead rows at the end")
MD_COLUMNS = ("date", "machine", *COLUMNS, "seed", "command")


def corpus(tag: str, classes: int, per_class: int) -> dict[str, list[str]]:
    return {f"{tag} kind {i}": [f"Sentence {j} on the {tag} thing of kind {i}, told from side {j}." for j in range(per_class)]
            for i in range(classes)}


def write_json(path: Path, table: dict[str, list[str]]) -> Path:
    path.write_text(json.dumps(table), encoding="utf-8")
    return path


VECTORS: list[str] = []  # the --vectors flag every command gets (empty: FAISS files)


def cli_output(url: str, home: Path, *args: str) -> tuple[int, str]:
    """A CLI command in this process (the user's code path), with its stdout."""
    from unibind.retrieval.cli.main import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(["--db", url, "--home", str(home), "--device", "cpu", *VECTORS, *args])
    return code, out.getvalue()


def cli_json(url: str, home: Path, *args: str) -> Any:
    code, out = cli_output(url, home, *args, "--json")
    if code not in (0, 1):
        raise RuntimeError(f"unibind {' '.join(args)} exited {code}")
    return json.loads(out)


def dead_rows(url: str, home: Path) -> dict[str, int]:
    """What serves nothing (no reader holds a lease here, so nothing older than the current version may stay):
    pending or deleted corpora, description rows of no complete corpus, items removed or never published, centres
    keyed by every corpus of an older set, segments dropped or never published, files in the store's folders that
    no record names."""
    from sqlalchemy import func, select

    from unibind.indexer.store.centre_keys import ALL_CORPORA, complete_corpus_ids, corpora_key
    from unibind.indexer.index.data_home import DataHome
    from unibind.schema import (BatchStatus, Centre, Corpus, CorpusStatus, Database, Description, Head, Item,
                                ItemBatch, Segment, SegmentState, Space)

    db = Database(url)
    try:
        data = DataHome(db, home)
        with db.session() as s:
            current = {sid: ALL_CORPORA + corpora_key(complete_corpus_ids(s, sid)) for sid in s.scalars(select(Space.id))}
            unreachable = sum(1 for sid, key in s.execute(select(Centre.space_id, Centre.corpora_key))
                              if key.startswith(ALL_CORPORA) and key != current[sid])
            records = list(s.scalars(select(Segment)))
            heads = {data.resolve(p).name for p in s.scalars(select(Head.path))}
            described = sum(s.scalars(select(Corpus.n_descriptions).where(Corpus.status == CorpusStatus.COMPLETE)))
            stored = int(s.scalar(select(func.count(Description.id))) or 0)
            pending = int(s.scalar(select(func.count(Corpus.id)).where(Corpus.status != CorpusStatus.COMPLETE)) or 0)
            unpublished = select(ItemBatch.id).where(ItemBatch.status != BatchStatus.COMPLETE)
            loose_items = int(s.scalar(select(func.count(Item.id)).where(
                (Item.deleted_version.is_not(None)) | Item.batch_id.in_(unpublished))) or 0)
        named = {data.resolve(r.path).name for r in records}
        files = {p.name for p in data.index_dir.iterdir() if p.suffix != ".lock"} if data.index_dir.is_dir() else set()
        head_files = {p.name for p in data.heads_dir.iterdir()} if data.heads_dir.is_dir() else set()
        out = {"pending corpora": pending, "loose descriptions": stored - described, "loose items": loose_items,
               "unreachable centres": unreachable,
               "old segments": sum(r.dropped_version is not None or r.state is not SegmentState.LIVE for r in records),
               "unnamed index files": len(files - {n for n in named if not n.startswith("milvus:")}),
               "unnamed head files": len(head_files - heads)}
        if VECTORS:
            out.update(milvus_leftovers(db, [r.path for r in records]))
        return out
    finally:
        db.dispose()


def milvus_leftovers(db: Any, paths: list[str]) -> dict[str, int]:
    """Rows of the store's segmented collections whose token no record names, and collections of the store's
    indexes that no record names (centre collections are the recognizer's, not counted)."""
    from unibind.indexer.index.milvus_backend import SEG, MilvusBackend
    from unibind.indexer.index.milvus_index import collection_prefix, collection_type, split_path
    from unibind.schema.settings import parse_vectors_spec

    uri = parse_vectors_spec(VECTORS[1]).uri
    assert uri is not None
    named = {split_path(p)[0] for p in paths if p.startswith("milvus:")}
    tokens = {split_path(p)[1] for p in paths if p.startswith("milvus:")}
    orphan_rows = unnamed = 0
    probe = MilvusBackend(uri, None, 1)
    try:
        for name in probe.collections(collection_prefix(db.identity)):
            if "_centres_" in name:
                continue
            if name not in named:
                unnamed += 1
            if collection_type(name) is None:
                continue
            known = ", ".join(str(t) for t in sorted(t for t in tokens if t is not None)) or "-1"
            found = probe.client.query(name, filter=f"{SEG} not in [{known}]", output_fields=["count(*)"])
            orphan_rows += int(found[0]["count(*)"])
    finally:
        probe.close()
    return {"orphan Milvus rows": orphan_rows, "unnamed Milvus collections": unnamed}


@dataclass
class Model:
    """What the store must hold: complete corpora with their counts, gallery items, the active head."""

    corpora: dict[str, int]
    items: int
    active: int
    item_ids: set[int] = field(default_factory=set)


@dataclass
class Trial:
    op: str
    killed: bool
    happened: bool
    repairs: int
    bad: list[str]


class Campaign:
    def __init__(self, url: str, home: Path, folder: Path, seed: int = 0) -> None:
        self.url, self.home, self.folder = url, home, folder
        self.rng = random.Random(seed)
        self.windows: dict[str, float] = {}
        self.startup = 0.0
        self.serial = 0
        self.model = Model({}, 0, 1)
        self.trials: list[Trial] = []

    # -- setup ---------------------------------------------------------------------------------------
    def setup(self) -> None:
        from unibind.indexer.modalities.head import LinearHead
        from unibind.indexer.modalities.versions import record_head
        from unibind.indexer.modalities.registry import register_modality
        from unibind.schema import Database, Space

        f = self.folder
        self.files = {
            "base": write_json(f / "base.json", corpus("base", 20, 10)),
            "victim-a": write_json(f / "victim-a.json", corpus("victim", 15, 10)),
            "victim-b": write_json(f / "victim-b.json", corpus("victim", 18, 10)),
            "new": write_json(f / "new.json", corpus("fresh", 40, 20)),
        }
        for name, path in (("base", "base"), ("victim", "victim-a"), ("spare-1", "base"), ("spare-2", "base"),
                           ("spare-3", "base")):
            self._must("ingest", str(self.files[path]), "--name", name, "--encoder", "minilm")
        db = Database(self.url)
        with db.transaction() as s:
            space = s.query(Space).one()
            modality_id = register_modality(s, space, "audio", dim=D_IN).id
        rng = np.random.default_rng(0)
        for version in (1, 2):
            w = (rng.standard_normal((DIM, D_IN)) / 4).astype(np.float32)
            record_head(db, self.home, modality_id, LinearHead(w, np.zeros(DIM, np.float32)), hyperparams={},
                        data_sha256="0" * 64, n_pairs=0, metrics={}, activate=version == 1)
        db.dispose()
        np.save(f / "gallery.npy", rng.standard_normal((400, D_IN)).astype(np.float32))
        (f / "gallery.jsonl").write_text("".join(json.dumps({"uri": f"g{i}", "label": "x"}) + "\n" for i in range(400)))
        np.save(f / "more.npy", rng.standard_normal((2000, D_IN)).astype(np.float32))
        (f / "more.jsonl").write_text("".join(json.dumps({"uri": f"m{i}", "label": "y"}) + "\n" for i in range(2000)))
        self._must("gallery", "add", "--modality", "audio", "--features", str(f / "gallery.npy"), "--meta",
                   str(f / "gallery.jsonl"))
        self.model = self.observe()
        started = time.perf_counter()
        proc = subprocess.run(self._command("corpus", "list"), capture_output=True, timeout=300)
        self.startup = time.perf_counter() - started
        if proc.returncode:
            raise RuntimeError(proc.stderr.decode())
        for op in OPS:  # one whole run of each: its window, and a check that it works at all
            started = time.perf_counter()
            args, _ = self._op_args(op)
            proc = subprocess.run(self._command(*args), capture_output=True, timeout=600)
            self.windows[op] = time.perf_counter() - started
            if proc.returncode:
                raise RuntimeError(f"{op} failed un-killed: {proc.stderr.decode()}")
            self.model = self.observe()
        log.info("start-up %.1fs; windows %s", self.startup, {k: round(v, 1) for k, v in self.windows.items()})

    def _must(self, *args: str) -> None:
        code, out = cli_output(self.url, self.home, *args)
        if code:
            raise RuntimeError(f"setup: unibind {' '.join(args)} exited {code}")

    def _command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "unibind.retrieval.cli", "--db", self.url, "--home", str(self.home), "--device", "cpu",
                *VECTORS, *args]

    def _op_args(self, op: str) -> tuple[list[str], str | None]:
        """The command of an operation and the corpus name it concerns."""
        self.serial += 1
        f = self.folder
        if op == "ingest":
            name = f"k{self.serial}"
            return ["ingest", str(self.files["new"]), "--name", name, "--chunk-size", "200"], name
        if op == "replace":
            current = self.model.corpora.get("victim")
            src = "victim-b" if current == 150 else "victim-a"
            return ["ingest", str(self.files[src]), "--name", "victim", "--replace", "--chunk-size", "50"], "victim"
        if op == "delete":
            spare = sorted(n for n in self.model.corpora if n not in ("base", "victim"))
            name = spare[-1] if spare else None
            if name is None:  # nothing left to delete: make one first
                self._must("ingest", str(self.files["base"]), "--name", f"spare-x{self.serial}")
                self.model = self.observe()
                name = f"spare-x{self.serial}"
            return ["corpus", "delete", name], name
        if op == "gallery add":
            return ["gallery", "add", "--modality", "audio", "--features", str(f / "more.npy"), "--meta",
                    str(f / "more.jsonl")], None
        if op == "compaction":  # every index merged into one segment: first make sure one index has several
            if self.most_segments() < 2:
                self._must("ingest", str(self.files["base"]), "--name", f"spare-c{self.serial}")
                self.model = self.observe()
            return ["index", "compact", "--full"], None
        if op == "vacuum":  # something only the vacuum removes: a corpus deleted while a reader held the version
            self._leave_for_the_vacuum()
            return ["index", "compact"], None
        other = 2 if self.model.active == 1 else 1
        return ["head", "activate", "--modality", "audio", "--version", str(other)], None

    def segments(self) -> int:
        """Live segments of every index."""
        from sqlalchemy import func, select

        from unibind.schema import Database, Segment

        db = Database(self.url)
        with db.session() as s:
            n = int(s.scalar(select(func.count(Segment.id)).where(Segment.dropped_version.is_(None))) or 0)
        db.dispose()
        return n

    def most_segments(self) -> int:
        """The live segments of the index that has the most."""
        from sqlalchemy import func, select

        from unibind.schema import Database, Segment

        db = Database(self.url)
        with db.session() as s:
            counts = s.execute(select(func.count(Segment.id)).where(Segment.dropped_version.is_(None))
                               .group_by(Segment.space_id, Segment.kind)).scalars().all()
        db.dispose()
        return max(counts, default=0)

    def leftovers(self) -> int:
        """Rows and segments that only the vacuum removes."""
        return sum(dead_rows(self.url, self.home)[k] for k in ("loose descriptions", "loose items", "old segments"))

    def _leave_for_the_vacuum(self) -> None:
        """A reader (this process) holds the current version while a corpus is deleted and gallery items removed
        (un-killed), then lets go: their rows and segments wait for the next vacuum."""
        from unibind.indexer.index.readers import ReaderLeaseHolder
        from unibind.schema import Database
        from unibind.schema.store_state import catalog_state

        from sqlalchemy import func, select

        from unibind.schema import Item
        from unibind.schema.versions import live_item

        name = f"spare-v{self.serial}"
        self._must("ingest", str(self.files["base"]), "--name", name)
        db = Database(self.url)
        try:
            with db.session() as s:
                version = catalog_state(s)[0]
                added = s.scalar(select(func.count(Item.id)).where(live_item(Item.modality_id), Item.label == "y"))
            with ReaderLeaseHolder(db) as lease:
                lease.hold(version)
                self._must("corpus", "delete", name)
                if added:  # the items of earlier gallery adds (removing a label no item has is refused)
                    self._must("gallery", "remove", "--modality", "audio", "--label", "y")
        finally:
            db.dispose()
        self.model = self.observe()

    # -- what the store holds, as a user sees it -----------------------------------------------------
    def observe(self) -> Model:
        from sqlalchemy import select

        from unibind.schema import Database, Item
        from unibind.schema.versions import live_item

        corpora = {c["name"]: c["descriptions"] for c in cli_json(self.url, self.home, "corpus", "list")
                   if c["status"] == "complete"}
        heads = cli_json(self.url, self.home, "head", "list")
        active = [h["version"] for h in heads if h["active"]]
        db = Database(self.url)
        with db.session() as s:
            ids = set(s.scalars(select(Item.id).where(live_item(Item.modality_id))))
        db.dispose()
        return Model(corpora, len(ids), active[0] if len(active) == 1 else -1, ids)

    # -- one trial -----------------------------------------------------------------------------------
    def trial(self, op: str | None = None) -> Trial:
        op = op or self.rng.choice(OPS)
        args, name = self._op_args(op)  # may ingest a corpus to delete first
        before = self.model
        segments_before, leftovers_before = self.segments(), self.leftovers()
        delay = self.rng.uniform(self.startup / 2, self.windows[op])
        proc = subprocess.Popen(self._command(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.perf_counter() + delay
        while time.perf_counter() < deadline and proc.poll() is None:
            time.sleep(0.01)
        killed = proc.poll() is None
        if killed:
            proc.send_signal(signal.SIGKILL)
        rc = proc.wait()
        err = proc.stderr.read().decode() if proc.stderr else ""
        if not killed and rc:
            raise RuntimeError(f"{op} failed un-killed: {err}")
        bad, repairs = self.check(op, name, before)
        after = self.model
        happened = {
            "ingest": name in after.corpora,
            "replace": after.corpora.get("victim") != before.corpora.get("victim"),
            "delete": name not in after.corpora,
            "gallery add": after.items > before.items,
            "head activation": after.active != before.active,
            "compaction": self.segments() < segments_before,
            "vacuum": self.leftovers() < leftovers_before,
        }[op]
        if not killed and not happened:
            bad.append(f"{op} completed but did not happen")
        result = Trial(op, killed, happened, repairs, bad)
        self.trials.append(result)
        log.info("%s %s: %s%s", op, "killed" if killed else "completed", "happened" if happened else "not done",
                 f"; BAD: {bad}" if bad else "")
        return result

    def check(self, op: str, name: str | None, before: Model) -> tuple[list[str], int]:
        from sqlalchemy import func, select

        from unibind.schema import Corpus, CorpusStatus, Database, Description

        bad: list[str] = []
        repairs = 0
        listed = cli_json(self.url, self.home, "corpus", "list")
        for c in listed:
            if c["status"] not in ("complete", "interrupted"):
                bad.append(f"corpus {c['name']} is {c['status']} after its process was killed")
        after = self.observe()
        # the operation happened whole or not at all; nothing else changed
        expected = dict(before.corpora)
        allowed = [dict(expected)]
        if op == "ingest" and name:
            allowed.append({**expected, name: 800})
        elif op == "replace":
            allowed.append({**expected, "victim": 180 if expected.get("victim") == 150 else 150})
        elif op == "delete" and name:
            allowed.append({k: v for k, v in expected.items() if k != name})
        if after.corpora not in allowed:
            bad.append(f"corpora {after.corpora} are neither before nor after the {op}: {allowed}")
        db = Database(self.url)
        with db.session() as s:
            rows = dict(s.execute(select(Corpus.name, func.count(Description.id)).join(Description)
                                  .where(Corpus.status == CorpusStatus.COMPLETE).group_by(Corpus.name)).all())
        db.dispose()
        if rows != after.corpora:
            bad.append(f"description rows {rows} differ from the corpora's counts {after.corpora}")
        added = 2000 if op == "gallery add" else 0
        if after.items not in (before.items, before.items + added) or not before.item_ids <= after.item_ids:
            bad.append(f"gallery holds {after.items} items (before {before.items}, this op adds {added})")
        if after.active not in (before.active, 3 - before.active) or (op != "head activation" and after.active != before.active):
            bad.append(f"active head is v{after.active} (before v{before.active})")
        heads = cli_json(self.url, self.home, "head", "list")
        if sorted(h["version"] for h in heads) != [1, 2]:
            bad.append(f"head versions {[h['version'] for h in heads]}")
        for verify, rebuild in ((("index", "verify"), ("index", "rebuild")), (("gallery", "verify"), ("gallery", "rebuild"))):
            if cli_output(self.url, self.home, *verify)[0] != 0:
                repairs += 1
                cli_output(self.url, self.home, *rebuild)
                if cli_output(self.url, self.home, *verify)[0] != 0:
                    bad.append(f"{' '.join(verify)} still fails after {' '.join(rebuild)}")
        if op == "ingest" and name not in after.corpora:
            (answer,) = cli_json(self.url, self.home, "search", "--text", "Sentence 3 on the fresh thing of kind 7",
                                 "--target", "descriptions", "-k", "10")
            hits = answer["hits"]
            if any((h["meta"] or {}).get("corpus") not in after.corpora for h in hits):
                bad.append(f"a search returned descriptions of an unpublished corpus: {hits}")
        self.model = after
        return bad, repairs

    def finish(self) -> dict[str, int]:
        """One more write (the next writer's vacuum removes what dead processes left, in every index), then count
        what serves nothing."""
        self._must("ingest", str(self.files["base"]), "--name", "last")
        return dead_rows(self.url, self.home)


def run_campaign(url: str, home: Path, folder: Path, n: int, seed: int = 0, ops: list[str] | None = None
                 ) -> tuple[Campaign, dict[str, int]]:
    campaign = Campaign(url, home, folder, seed)
    campaign.setup()
    for i in range(n):
        campaign.trial(ops[i % len(ops)] if ops else None)
    return campaign, campaign.finish()


def summary(backend: str, campaign: Campaign, dead: dict[str, int]) -> list[object]:
    trials = campaign.trials
    kills = Counter(t.op for t in trials if t.killed)
    happened = sum(t.happened for t in trials if t.killed)
    return [backend, len(trials), sum(kills.values()), sum(not t.killed for t in trials),
            ", ".join(f"{op} {kills[op]}" for op in OPS), f"{happened} / {sum(kills.values()) - happened}",
            sum(t.repairs for t in trials), sum(len(t.bad) for t in trials), sum(dead.values())]


def start_milvus_lite(data: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A ``milvus-lite server`` on a free loopback port (processes share a milvus-lite folder only through one),
    waited for until it accepts connections."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exe = Path(sys.executable).with_name("milvus-lite")
    data.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([str(exe), "server", "--data-dir", str(data), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"milvus://127.0.0.1:{port}"
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the milvus-lite server did not accept connections on 127.0.0.1:{port}")


@contextlib.contextmanager
def store(db: str | None) -> Iterator[tuple[str, str]]:
    if db:
        from bench.ingest import PgServer

        pg = PgServer(db)
        try:
            with pg.fresh_schema() as url:
                yield url, "postgres"
        finally:
            pg.dispose()
    else:
        with tempfile.TemporaryDirectory(prefix="unibind-kill-db-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'unibind.db'}", "sqlite"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=50, help="trials (default 50)")
    p.add_argument("--db", help="a PostgreSQL URL (a fresh schema is made on it); default SQLite in a temp folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ops", help=f"comma-separated operations to kill, in turn (default: each trial draws one of "
                                 f"{', '.join(OPS)})")
    p.add_argument("--vectors", default="faiss",
                   help="faiss (default), milvus-lite (a milvus-lite server on loopback) or milvus://HOST:PORT")
    p.add_argument("--no-append", action="store_true", help="print only; do not append to BENCHMARKS.md")
    args = p.parse_args(argv)
    ops = [o.strip() for o in args.ops.split(",")] if args.ops else None
    if ops and any(o not in OPS for o in ops):
        p.error(f"--ops: each of {', '.join(OPS)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("indexer", "retrieval", "alembic", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    folder = Path(tempfile.mkdtemp(prefix="unibind-kill-"))
    server = None
    try:
        if args.vectors == "milvus-lite":
            server, vectors = start_milvus_lite(folder / "milvus")
        else:
            vectors = args.vectors
        if vectors != "faiss":
            VECTORS[:] = ["--vectors", vectors]
        with store(args.db) as (url, backend):
            if VECTORS:
                backend += " + " + args.vectors
            campaign, dead = run_campaign(url, folder / "home", folder, args.n, args.seed, ops)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
        shutil.rmtree(folder, ignore_errors=True)
    row = summary(backend, campaign, dead)
    print(f"start-up {campaign.startup:.1f}s; op windows: "
          + ", ".join(f"{op} {s:.1f}s" for op, s in campaign.windows.items()))
    print(text_table(COLUMNS, [row]))
    for t in campaign.trials:
        for b in t.bad:
            print(f"BAD ({t.op}): {b}")
    if dead and any(dead.values()):
        print(f"dead rows at the end: {dead}")
    if not args.no_append:
        append_rows(SECTION, MD_COLUMNS, [[now(), machine(), *row, args.seed, f"`{command_line('bench/kill.py')}`"]])
    return 0 if not any(t.bad for t in campaign.trials) and not any(dead.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
