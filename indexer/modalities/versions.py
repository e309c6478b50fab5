"""Versions of a modality's head: safetensors files under ``$UNIBIND_HOME/heads/<store id>/`` plus a row each (dims,
hyper-parameters, data hash, validation metrics, the file's path relative to the data folder); at most one version
per modality is active.

A version is recorded in a transaction that takes the catalog lock first, so two trainings of one modality get
versions one after the other, never the same. Its file is written inside that transaction; head files that no
row names (a recording that failed or was killed) are removed by the next recording and by
``unibind index rebuild`` (:func:`collect_head_files`, under the same lock, so it never takes a file whose row is
about to commit)."""

from __future__ import annotations

import logging
import math
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from unibind.indexer.store.removal import reap_abandoned
from unibind.indexer.index.data_home import DataHome
from unibind.indexer.index.files import fsync_dir
from unibind.indexer.modalities.head import LinearHead
from unibind.schema import Database, Head, Modality, Space
from unibind.schema.errors import Conflict, InvalidInput, NotFound
from unibind.schema.store_state import bump_version, lock_catalog

log = logging.getLogger(__name__)


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
    """A version of the modality's head, or (``version`` None) its active one; NotFound when missing."""
    if version is None:
        head = active_head(session, modality)
        if head is None:
            raise NotFound(f"modality {modality.name!r} has no active head: train one with "
                           f"`unibind head train --modality {modality.name}` or activate a version")
        return head
    head = session.scalars(select(Head).where(Head.modality_id == modality.id, Head.version == version)).first()
    if head is None:
        versions = ", ".join(str(v) for v in session.scalars(
            select(Head.version).where(Head.modality_id == modality.id).order_by(Head.version))) or "none"
        raise NotFound(f"modality {modality.name!r} has no head version {version} (versions: {versions})")
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
    data = DataHome(db, home)
    reap_abandoned(db)  # the next writer removes what dead ingests left
    collect_head_files(db, data)  # and the files of recordings that died before their commit
    path: Path | None = None
    try:
        with db.transaction() as session:
            (bump_version if activate else lock_catalog)(session)  # versions are numbered one writer at a time
            modality = session.get(Modality, modality_id)
            if modality is None:
                raise NotFound(f"no modality with id {modality_id}")
            if head.d_out != modality.space.dim or head.d_in != modality.input_dim:
                raise InvalidInput(
                    f"a head Linear({head.d_in}, {head.d_out}) does not fit modality {modality.name!r} "
                    f"(input {modality.input_dim}, space {modality.space.dim})"
                )
            version = (session.scalar(select(func.max(Head.version)).where(Head.modality_id == modality.id)) or 0) + 1
            path = data.heads_dir / f"space-{modality.space_id}-{modality.name}-v{version}-{uuid.uuid4().hex[:8]}.safetensors"
            sha, _size = head.save(path, {
                "modality": modality.name, "space": modality.space.encoder, "version": str(version),
                "d_in": str(head.d_in), "d_out": str(head.d_out), "data_sha256": data_sha256,
            })  # durable, rename included, before the row names it
            if activate:
                session.execute(update(Head).where(Head.modality_id == modality.id).values(active=False))
                session.flush()
            row = Head(
                modality_id=modality.id, version=version, path=data.relative(path), file_sha256=sha, d_in=head.d_in,
                d_out=head.d_out, hyperparams=jsonable(hyperparams), data_sha256=data_sha256, n_pairs=n_pairs,
                metrics=jsonable(metrics), active=activate,
            )
            session.add(row)
            session.flush()
    except BaseException:
        if path is not None:  # the row did not commit (or did, if the commit's answer was lost: checked)
            _remove_unrecorded(db, data, path)
        raise
    log.info("recorded head %s v%d (%s)", modality.name, version, "active" if activate else "inactive")
    return row


def _remove_unrecorded(db: Database, data: DataHome, path: Path) -> None:
    """Remove a head file written for a recording that failed, unless a row names it after all."""
    try:
        with db.transaction() as session:
            lock_catalog(session)
            if not session.scalar(select(func.count(Head.id)).where(Head.path == data.relative(path))):
                path.unlink(missing_ok=True)
    except Exception as e:  # noqa: BLE001 - the next recording or index rebuild removes it
        log.warning("could not remove the head file of a failed recording %s: %s", path.name, e)


def collect_head_files(db: Database, data: DataHome) -> list[str]:
    """Remove head files (and temp files) in the store's heads folder that no head row names."""
    folder = data.heads_dir
    if not folder.is_dir():
        return []
    gone = []
    with db.transaction() as session:
        lock_catalog(session)  # a recording holds it from its file write to its commit
        named = {data.resolve(p).name for p in session.scalars(select(Head.path))}
        for p in [*folder.glob("*.safetensors"), *folder.glob(".*.tmp")]:
            if p.is_file() and p.name not in named:
                p.unlink(missing_ok=True)
                gone.append(p.name)
    if gone:
        fsync_dir(folder)
        log.info("removed %d head files no version names", len(gone))
    return gone


def load_head(head: Head, data: DataHome) -> LinearHead:
    """The head's weights, checked against the digest recorded with them (Conflict, naming the file relative to
    the data folder, when it is missing or changed)."""
    try:
        linear, _meta = LinearHead.load(data.resolve(head.path), expect_sha256=head.file_sha256)
    except (OSError, ValueError) as e:
        what = "is missing" if isinstance(e, FileNotFoundError) else "changed since it was recorded, or is unreadable"
        raise Conflict(f"the file of head version {head.version} ({head.path}) {what}: activate another version "
                       "(unibind head activate), or train the head again") from e
    if (linear.d_in, linear.d_out) != (head.d_in, head.d_out):
        raise Conflict(f"{head.path}: holds Linear({linear.d_in}, {linear.d_out}), the record says "
                       f"Linear({head.d_in}, {head.d_out})")
    return linear
