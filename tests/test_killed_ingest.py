"""A real `unibind ingest` process killed mid-run leaves no half-visible corpus; verify and rebuild repair."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from unibind.indexer.store.contents import description_index
from unibind.indexer.runtime.device import Device
from unibind.retrieval.cli.main import main
from unibind.schema import Corpus, CorpusStatus, Database, Description, Space
from tests.corpus_samples import ANIMALS, write_json

BIG = {f"class {i}": [f"Description number {j} of the thing called class {i}, seen from angle {j}." for j in range(60)] for i in range(40)}


def _cli(db_url: str, home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "unibind.retrieval.cli", "--db", db_url, "--home", str(home), *args]


@pytest.mark.slow
def test_killed_ingest_leaves_nothing_visible(db_url: str, home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--db", db_url, "--home", str(home), "ingest", str(write_json(tmp_path / "a.json", ANIMALS)),
                 "--name", "animals", "--encoder", "minilm"]) == 0
    big = write_json(tmp_path / "big.json", BIG)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(_cli(db_url, home, "ingest", str(big), "--name", "big", "--encoder", "minilm", "--chunk-size", "64"),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db = Database(db_url)
    deadline = time.monotonic() + 600  # a hang guard: the loop waits on the event
    try:
        while time.monotonic() < deadline:  # wait until some rows of the new corpus are written
            with db.session() as s:
                n = s.scalar(select(func.count(Description.id)).join(Corpus).where(Corpus.status == CorpusStatus.INGESTING))
            if n and n >= 128:
                break
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.05)
        else:
            pytest.fail("the ingest never wrote rows")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with db.session() as s:
        statuses = dict(s.execute(select(Corpus.name, Corpus.status)).all())
        space = s.scalars(select(Space)).one()
    assert statuses["animals"] == CorpusStatus.COMPLETE
    hidden = [n for n, st in statuses.items() if st == CorpusStatus.INGESTING]
    assert len(hidden) == 1 and hidden[0].startswith("~ingesting-")  # the killed run's corpus, never under its name
    capsys.readouterr()
    assert main(["--db", db_url, "--home", str(home), "categories", "--json"]) == 0
    assert "class 0" not in capsys.readouterr().out  # nothing of the half corpus is visible
    assert main(["--db", db_url, "--home", str(home), "search-descriptions", "Description number 3 of class 1", "-k", "50", "--json"]) == 0
    assert "class 1" not in capsys.readouterr().out
    assert description_index(db, space, home, Device()).verify().ok
    assert main(["--db", db_url, "--home", str(home), "corpus", "list", "--json"]) == 0
    listed = {c["status"]: c["name"] for c in json.loads(capsys.readouterr().out)}
    assert listed["interrupted"].endswith("(big)") and "ingesting" not in listed  # its process is dead: shown so
    assert main(["--db", db_url, "--home", str(home), "index", "rebuild"]) == 0  # the one repair command
    assert "removed interrupted ingests big" in capsys.readouterr().out
    with db.session() as s:
        assert s.scalar(select(func.count(Corpus.id))) == 1
    assert main(["--db", db_url, "--home", str(home), "ingest", str(big), "--name", "big", "--encoder", "minilm"]) == 0
    assert main(["--db", db_url, "--home", str(home), "index", "verify"]) == 0
    db.dispose()
