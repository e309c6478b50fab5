"""The kill campaign in short (bench/kill.py): each write operation once (ingest, replace, delete, gallery add, head
activation, compaction, vacuum), as a real process SIGKILLed at a random moment, on SQLite and PostgreSQL. After every kill the store shows the operation whole or not at all, verify
passes (or the rebuild command repairs it), every earlier corpus, head and item is there, and after one more
write nothing dead remains."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.kill import OPS, run_campaign

pytestmark = pytest.mark.slow


def test_a_kill_of_each_operation_leaves_no_bad_state(db_url: str, tmp_path: Path) -> None:
    campaign, dead = run_campaign(db_url, tmp_path / "home", tmp_path, n=len(OPS), seed=1, ops=list(OPS))
    assert [t.op for t in campaign.trials] == list(OPS)
    assert [b for t in campaign.trials for b in t.bad] == []
    assert [t.repairs for t in campaign.trials] == [0] * len(OPS)  # the old index kept serving: nothing to rebuild
    assert any(t.killed for t in campaign.trials)
    assert dead == dict.fromkeys(dead, 0)
