"""The modalities of a space: text (the space's encoder), image (an open_clip / CLIP image tower) and named
feature modalities whose inputs are vectors from an external frozen encoder (ImageBind, PointBind, CLAP, ...).

A modality declares its input dimension (the head's input). The well-known feature names are registered on
first use with the dimension of the first features given; any other name must be registered first.
"""

from __future__ import annotations

import logging
import re

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from unibind.schema import Database, Head, Item, Modality, ModalityKind, Space
from unibind.schema.store_state import bump_version, lock_catalog
from unibind.schema.errors import InvalidInput, NotFound

log = logging.getLogger(__name__)

TEXT = "text"
IMAGE = "image"
WELL_KNOWN_FEATURES = ("audio", "point", "video", "event", "thermal", "depth", "imu")
NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def check_name(name: str) -> str:
    """A modality name: lower-case letters, digits, ``_`` or ``-``, starting with a letter, at most 32."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidInput(
            f"modality name {name!r} is not valid: use 1-32 lower-case letters, digits, '_' or '-', starting with a letter"
        )
    return name


def kind_of(name: str) -> ModalityKind:
    return ModalityKind.TEXT if name == TEXT else ModalityKind.IMAGE if name == IMAGE else ModalityKind.FEATURES


def list_modalities(session: Session, space: Space) -> list[Modality]:
    return list(session.scalars(select(Modality).where(Modality.space_id == space.id).order_by(Modality.id)))


def get_modality(session: Session, space: Space, name: str) -> Modality | None:
    stmt = select(Modality).where(Modality.space_id == space.id, Modality.name == name)
    return session.scalars(stmt).first()


def find_modality(session: Session, space: Space, name: str) -> Modality:
    """The registered modality ``name`` of ``space``; NotFound naming the known ones otherwise."""
    if name == "descriptions":
        raise InvalidInput("'descriptions' is a search target, not a modality")
    found = get_modality(session, space, check_name(name))
    if found is None:
        known = ", ".join(m.name for m in list_modalities(session, space)) or "none yet"
        hint = (
            "add images first: unibind gallery add --modality image --files ..."
            if name == IMAGE
            else f"train a head for it first: unibind head train --modality {name} --pairs PAIRS.jsonl --features FILE"
            if name in WELL_KNOWN_FEATURES
            else f"register it: unibind modality add {name} --dim D"
        )
        raise NotFound(f"unknown modality {name!r} in space {space.encoder} (registered: {known}); {hint}")
    return found


def register_modality(
    session: Session, space: Space, name: str, *, dim: int, encoder: str | None = None
) -> Modality:
    """Register a modality (flushes, the caller commits). Registering it again with the same dimension
    returns the existing row; a different dimension is an error. Call it first in its transaction: a new
    modality takes the catalog lock (two processes registering one name cannot race) and bumps the version."""
    check_name(name)
    if name == "descriptions":
        raise InvalidInput("'descriptions' is reserved: it is the search target of the knowledge base")
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise InvalidInput(f"modality {name!r}: --dim must be a positive integer, got {dim!r}")
    kind = kind_of(name)
    if kind is ModalityKind.TEXT and dim != space.dim:
        raise InvalidInput(f"modality 'text' of space {space.encoder} has the space's dimension {space.dim}, not {dim}")
    existing = get_modality(session, space, name)
    if existing is None:
        bump_version(session)
        existing = get_modality(session, space, name)  # read again under the lock
    if existing is not None:
        if existing.input_dim != dim:
            raise InvalidInput(
                f"modality {name!r} of space {space.encoder} is registered with input dimension {existing.input_dim}, "
                f"not {dim}"
            )
        if encoder and existing.encoder != encoder and kind is ModalityKind.IMAGE:
            raise InvalidInput(
                f"modality 'image' of space {space.encoder} uses the image encoder {existing.encoder}, not {encoder}"
            )
        return existing
    modality = Modality(space_id=space.id, name=name, kind=kind, input_dim=dim, encoder=encoder)
    session.add(modality)
    session.flush()
    log.info("registered modality %s (%s, input dimension %d) in space %s", name, kind.value, dim, space.encoder)
    return modality


def drop_modality_if_unused(db: Database, modality_id: int) -> bool:
    """Best effort, after a failure of the operation that registered it: remove a modality with no heads and no
    items."""
    try:
        with db.transaction() as session:
            lock_catalog(session)
            used = any(session.scalar(select(func.count()).select_from(m).where(m.modality_id == modality_id))
                       for m in (Head, Item))
            if not used:
                bump_version(session)  # a modality goes: the catalog version moves
                session.execute(delete(Modality).where(Modality.id == modality_id))
            return not used
    except Exception as e:  # noqa: BLE001 - the original error matters more
        log.warning("could not remove the modality %d registered by the failed operation: %s", modality_id, e)
        return False
