"""Any input into the space: a modality's frozen encoder, then its active head (or none, zero-shot).

- ``text``: the space's own text encoder, no head.
- ``image``: an image tower (the space's open_clip / CLIP encoder by default). With no active head it works
  zero-shot when the tower shares the space with the text encoder (the paper's zero-shot setting); an
  active head replaces that.
- a feature modality: vectors from an external encoder, through the active head (required).

:func:`query_vectors` is the one way a query (texts, images or feature vectors) becomes vectors of the space,
for the command line and the service alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from unibind.indexer.index.data_home import DataHome
from unibind.indexer.runtime.device import Device
from unibind.indexer.encoders.base import Encoder
from unibind.indexer.encoders.factory import build_encoder
from unibind.indexer.encoders.spec import parse_encoder_spec
from unibind.indexer.modalities.head import LinearHead
from unibind.indexer.modalities.versions import active_head, load_head
from unibind.indexer.modalities.registry import (
    IMAGE,
    TEXT,
    WELL_KNOWN_FEATURES,
    check_name,
    find_modality,
    get_modality,
    register_modality,
)
from unibind.indexer.runtime.vectors import normalize
from unibind.schema import Database, Modality, ModalityKind, Space
from unibind.schema.errors import InvalidInput, NotFound

log = logging.getLogger(__name__)

IMAGE_TOWER_KINDS = ("open_clip", "hf")


def has_image_tower(encoder_spec: str) -> bool:
    return parse_encoder_spec(encoder_spec).kind in IMAGE_TOWER_KINDS


def no_image_queries(space_encoder: str) -> str:
    """Why a space without an image tower or image head takes no images, and the command that makes it take them
    (an image head needs an image tower, named with --image-encoder, since the space has none)."""
    return (f"space {space_encoder} has no image tower and no active image head: it takes no images until a head "
            f"is trained: unibind head train --modality image --image-encoder open_clip:ARCH@CHECKPOINT "
            f"--pairs PAIRS.jsonl")


def default_image_encoder(space: Space, given: str | None) -> str:
    """``given``, else the space's own encoder when it has an image tower; InvalidInput otherwise."""
    if given:
        spec = str(parse_encoder_spec(given))
        if not has_image_tower(spec):
            raise InvalidInput(f"--image-encoder {spec}: not an image encoder (use open_clip:... or hf:...)")
        return spec
    if has_image_tower(space.encoder):
        return space.encoder
    raise InvalidInput(
        f"space {space.encoder} has no image tower: name one with --image-encoder open_clip:ARCH@CHECKPOINT "
        "(images then need a trained head to reach the space)"
    )


def ensure_image_modality(session: Session, space: Space, encoder: Encoder) -> Modality:
    """The image modality row of ``space`` for the tower ``encoder`` (registered on first use)."""
    existing = get_modality(session, space, IMAGE)
    if existing is not None and existing.encoder != encoder.spec:
        raise InvalidInput(f"modality 'image' of space {space.encoder} uses the image encoder {existing.encoder}, "
                           f"not {encoder.spec}")
    return existing or register_modality(session, space, IMAGE, dim=encoder.dim, encoder=encoder.spec)


@dataclass(frozen=True)
class Projection:
    """Turns inputs of one modality into unit vectors of the space."""

    space_id: int
    name: str
    kind: ModalityKind
    input_dim: int
    space_dim: int
    modality_id: int | None  # None for text, and for an image modality not registered yet (zero-shot)
    encoder: Encoder | None  # text and image; None for feature modalities
    head: LinearHead | None  # None: zero-shot (text, or an image tower that shares the space)
    head_id: int | None
    head_version: int | None

    @property
    def zero_shot(self) -> bool:
        return self.head is None

    def describe(self) -> str:
        via = f"head v{self.head_version}" if self.head is not None else "zero-shot"
        return f"{self.name} ({via})"

    # -- raw encoder outputs ----------------------------------------------------------------------------
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if self.kind is not ModalityKind.TEXT or self.encoder is None:
            raise InvalidInput(f"modality {self.name!r} does not take text inputs")
        return self.encoder.encode_text(list(texts))

    def encode_images(self, paths: Sequence[str | Path | Any], *, progress: bool | None = None) -> np.ndarray:
        """[N] image files (or PIL images) → [N, input_dim] encoder outputs; a missing or unreadable file names
        itself."""
        if self.kind is not ModalityKind.IMAGE or self.encoder is None:
            raise InvalidInput(f"modality {self.name!r} does not take images (it takes "
                               f"{'text' if self.kind is ModalityKind.TEXT else 'feature vectors'})")
        return self.encoder.encode_images(list(paths), progress=progress)

    def check_features(self, features: np.ndarray, source: str = "features") -> np.ndarray:
        a = np.asarray(features, dtype=np.float32)
        if a.ndim != 2 or a.shape[1] != self.input_dim:
            width = a.shape[1] if a.ndim == 2 else a.shape
            raise InvalidInput(f"{source}: vectors have {width} dimensions, modality {self.name} expects {self.input_dim}")
        if not np.isfinite(a).all():
            raise InvalidInput(f"{source}: row {int(np.argwhere(~np.isfinite(a).all(axis=1))[0, 0])} contains NaN or inf")
        return a

    # -- into the space ---------------------------------------------------------------------------------
    def project(self, raw: np.ndarray) -> np.ndarray:
        """[N, input_dim] encoder outputs → [N, space_dim] unit vectors of the space."""
        if self.head is not None:
            return self.head.project(raw)
        a = np.asarray(raw, dtype=np.float32)
        if a.ndim != 2 or a.shape[1] != self.space_dim:
            raise InvalidInput(f"{self.name} vectors of shape {a.shape} are not in the space (dimension {self.space_dim})")
        return normalize(a)

    def texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.project(self.encode_texts(texts))

    def images(self, paths: Sequence[str | Path | Any], *, progress: bool | None = None) -> np.ndarray:
        return self.project(self.encode_images(paths, progress=progress))

    def features(self, features: np.ndarray, source: str = "features") -> np.ndarray:
        if self.kind is not ModalityKind.FEATURES:
            raise InvalidInput(f"modality {self.name!r} does not take feature vectors")
        return self.project(self.check_features(features, source))


def load_projection(
    db: Database,
    space: Space,
    name: str,
    device: Device,
    *,
    home: Path,
    image_encoder: str | None = None,
    text_encoder: Encoder | None = None,
) -> Projection:
    """The projection of modality ``name`` of ``space``: its encoder and active head (NotFound when the
    modality is unknown, or has no active head and cannot work zero-shot)."""
    check_name(name)
    if name == TEXT:
        encoder = text_encoder or build_encoder(space.encoder, device)
        return Projection(space.id, TEXT, ModalityKind.TEXT, space.dim, space.dim, None, encoder, None, None, None)
    with db.session() as session:
        known_name = name in (IMAGE, *WELL_KNOWN_FEATURES)  # a head can be trained for it without registering it
        modality = get_modality(session, space, name) if known_name else find_modality(session, space, name)
        head_row = active_head(session, modality) if modality is not None else None
        linear = load_head(head_row, DataHome(db, home)) if head_row is not None else None
    if name == IMAGE:
        if modality is not None and modality.encoder:
            spec = modality.encoder
        elif image_encoder or has_image_tower(space.encoder):
            spec = default_image_encoder(space, image_encoder)
        else:  # a query or a gallery item: the advice is a head, not an option of this command
            raise InvalidInput(no_image_queries(space.encoder))
        if image_encoder and str(parse_encoder_spec(image_encoder)) != spec:
            raise InvalidInput(f"modality 'image' of space {space.encoder} uses the image encoder {spec}, not {image_encoder}")
        if linear is None and spec != space.encoder:
            raise NotFound(
                f"modality 'image' uses {spec}, which does not share the space {space.encoder}, and has no active "
                "head: train one with `unibind head train --modality image --pairs PAIRS.jsonl`"
            )
        # the space's own tower: the text encoder object already loaded (one model in memory, not two)
        encoder = text_encoder if text_encoder is not None and text_encoder.spec == spec else build_encoder(spec, device)
        input_dim = modality.input_dim if modality is not None else encoder.dim
        return Projection(space.id, IMAGE, ModalityKind.IMAGE, input_dim, space.dim,
                          modality.id if modality is not None else None, encoder, linear,
                          head_row.id if head_row else None, head_row.version if head_row else None)
    if modality is None or linear is None:
        raise NotFound(f"modality {name!r} has no active head: train one with "
                       f"`unibind head train --modality {name} --pairs PAIRS.jsonl --features FILE`")
    return Projection(space.id, name, ModalityKind.FEATURES, modality.input_dim, space.dim, modality.id, None, linear,
                      head_row.id, head_row.version)


def query_vectors(
    projection: Callable[[str], Projection],
    *,
    texts: Sequence[str] | None = None,
    images: Sequence[Any] | None = None,
    features: np.ndarray | Sequence[Sequence[float]] | None = None,
    modality: str | None = None,
    source: str = "features",
    lock: AbstractContextManager[Any] | None = None,
) -> tuple[str, np.ndarray]:
    """One kind of query → (its modality, [B, d] unit vectors of the space).

    Exactly one of ``texts``, ``images`` (files or PIL images) and ``features`` ([B, input_dim] vectors of
    ``modality``, named ``source`` in messages). ``modality`` is optional for texts and images (it must then
    say ``text`` / ``image``) and required for features. ``projection`` gives a modality's projection (e.g.
    ``lambda m: load_projection(db, space, m, device, home=home)``, or a cache of them).

    Texts come out as the text encoder's unit rows, the vectors the descriptions were stored with; images and
    features go through their modality's projection. ``lock``, when given, is held while images or features
    are encoded and projected (a text encoder that must be shared brings its own lock).
    Raises :class:`~unibind.schema.errors.InvalidInput` for a query of no kind or two, a modality that does
    not take that kind, or features of the wrong dimension; ``NotFound`` for an unknown modality.
    """
    given = [name for name, v in (("texts", texts), ("images", images), ("feature vectors", features)) if v is not None]
    if len(given) != 1:
        raise InvalidInput("give exactly one kind of query: texts, images or feature vectors (with their modality)"
                           + (f"; got {' and '.join(given)}" if given else ""))
    if features is not None:
        if modality is None:
            raise InvalidInput("feature vectors need their modality (the name of the encoder that made them)")
        if modality in (TEXT, IMAGE):
            raise InvalidInput(f"modality {modality!r} does not take feature vectors: give its queries as "
                               f"{'texts' if modality == TEXT else 'images'}")
        chosen = projection(modality)  # an unknown modality first: NotFound
        try:
            matrix = np.asarray(features, dtype=np.float32)
        except (TypeError, ValueError):  # ragged rows, or values that are not numbers
            raise InvalidInput(f"{source}: the feature vectors must be rows of numbers, all of one length") from None
        with lock if lock is not None else nullcontext():
            return modality, chosen.features(matrix, source)
    kind = TEXT if texts is not None else IMAGE
    if modality is not None and modality != kind:
        raise InvalidInput(f"modality {modality!r} does not go with {given[0]}")
    if texts is not None:
        return TEXT, projection(TEXT).encode_texts(texts)
    chosen = projection(IMAGE)
    with lock if lock is not None else nullcontext():
        return IMAGE, chosen.images(images)  # type: ignore[arg-type]  # not None: exactly one kind was given
