"""Versions of a modality's head: safetensors files under ``$UNIBIND_HOME/heads/<database key>/`` plus a row
each (dims, hyper-parameters, data hash, validation metrics); at most one version per modality is active."""

from __future__ import annotations

import logging
import math
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from indexer.head import LinearHead
from schema import Database, Head, Modality, Space

log = logging.getLogger(__name__)


def heads_dir(home: Path, db: Database) -> Path:
    """One folder per database, like the index files (``indexer.description_index.index_dir``)."""
    return home / "heads" / db.key


def jsonable(value: Any) -> Any:
    """``value`` with NaN and inf floats as None (PostgreSQL's JSON type refuses them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def list_heads(session: Session, space: Space, modality: Modality | None = None) -> list[Head]:
    stmt = select(Head).join(Modality, Head.modality_id == Modality.id).where(Modality.space_id == space.id)
    if modality is not None:
        stmt = stmt.where(Head.modality_id == modality.id)
    return list(session.scalars(stmt.order_by(Modality.name, Head.version)))


def active_head(session: Session, modality: Modality) -> Head | None:
    return session.scalars(select(Head).where(Head.modality_id == modality.id, Head.active.is_(True))).first()


def find_head(session: Session, modality: Modality, version: int | None = None) -> Head:
    """A version of the modality's head, or (``version`` None) its active one; ValueError when missing."""
    if version is None:
        head = active_head(session, modality)
        if head is None:
            raise ValueError(f"modality {modality.name!r} has no active head: train one with "
                             f"`unibind heads train --modality {modality.name}` or activate a version")
        return head
    head = session.scalars(select(Head).where(Head.modality_id == modality.id, Head.version == version)).first()
    if head is None:
        versions = ", ".join(str(v) for v in session.scalars(
            select(Head.version).where(Head.modality_id == modality.id).order_by(Head.version))) or "none"
        raise ValueError(f"modality {modality.name!r} has no head version {version} (versions: {versions})")
    return head


def record_head(
    db: Database,
    home: Path,
    modality_id: int,
    head: LinearHead,
    *,
    hyperparams: dict[str, Any],
    data_sha256: str,
    n_pairs: int,
    metrics: dict[str, Any],
    activate: bool = True,
) -> Head:
    """Write the head's file and its row (the next version), activating it when asked, in one commit."""
    with db.transaction() as session:
        modality = session.get(Modality, modality_id)
        if modality is None:
            raise ValueError(f"no modality with id {modality_id}")
        if head.d_out != modality.space.dim or head.d_in != modality.input_dim:
            raise ValueError(
                f"a head Linear({head.d_in}, {head.d_out}) does not fit modality {modality.name!r} "
                f"(input {modality.input_dim}, space {modality.space.dim})"
            )
        version = (session.scalar(select(func.max(Head.version)).where(Head.modality_id == modality.id)) or 0) + 1
        # a unique name: a concurrent training that loses the race for this version cannot replace the file
        path = heads_dir(home, db) / f"space-{modality.space_id}-{modality.name}-v{version}-{uuid.uuid4().hex[:8]}.safetensors"
        sha, _size = head.save(path, {
            "modality": modality.name, "space": modality.space.encoder, "version": str(version),
            "d_in": str(head.d_in), "d_out": str(head.d_out), "data_sha256": data_sha256,
        })
        if activate:
            session.execute(update(Head).where(Head.modality_id == modality.id).values(active=False))
            session.flush()
        row = Head(
            modality_id=modality.id, version=version, path=str(path), file_sha256=sha, d_in=head.d_in,
            d_out=head.d_out, hyperparams=jsonable(hyperparams), data_sha256=data_sha256, n_pairs=n_pairs,
            metrics=jsonable(metrics), active=activate,
        )
        session.add(row)
        session.flush()
    log.info("recorded head %s v%d (%s)", modality.name, version, "active" if activate else "inactive")
    return row


def load_head(head: Head) -> LinearHead:
    """The head's weights, checked against the digest recorded with them."""
    linear, _meta = LinearHead.load(Path(head.path), expect_sha256=head.file_sha256)
    if (linear.d_in, linear.d_out) != (head.d_in, head.d_out):
        raise ValueError(f"{head.path}: holds Linear({linear.d_in}, {linear.d_out}), the record says "
                         f"Linear({head.d_in}, {head.d_out})")
    return linear
