"""Train a modality's head from a pairs file: read and check the pairs, encode the inputs (images with the
frozen image tower; feature rows as given) and the descriptions (the space's text encoder), train with InfoNCE,
then record the head as the next version of the modality (active by default). Bad input writes nothing."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unibind.indexer.runtime.device import Device
from unibind.indexer.encoders.factory import build_encoder
from unibind.indexer.readers.features import read_features
from unibind.indexer.gallery.items import reproject
from unibind.indexer.modalities.versions import record_head
from unibind.indexer.training.infonce import HeadTrainConfig, data_digest, train_head
from unibind.indexer.modalities.registry import (
    IMAGE,
    TEXT,
    WELL_KNOWN_FEATURES,
    check_name,
    drop_modality_if_unused,
    find_modality,
    get_modality,
    register_modality,
)
from unibind.indexer.readers.pairs import Pair, read_pairs
from unibind.indexer.modalities.projection import default_image_encoder, ensure_image_modality
from unibind.schema import Database, Space
from unibind.schema.store_state import lock_catalog
from unibind.schema.errors import InvalidInput

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeadJob:
    """What to train: the modality, its pairs, the features file (feature modalities) or the image tower."""

    modality: str
    pairs: Path
    features: Path | None = None
    image_encoder: str | None = None
    activate: bool = True
    config: HeadTrainConfig = field(default_factory=HeadTrainConfig)


@dataclass(frozen=True)
class HeadReport:
    modality: str
    version: int
    head_id: int
    active: bool
    path: str
    samples: int
    descriptions: int
    pairs: int
    metrics: dict[str, Any]
    reprojected_items: int  # gallery items re-projected through the new active head
    seconds: float


def _group_samples(pairs: list[Pair]) -> tuple[list[Any], list[list[str]]]:
    """Lines with the same input are one sample with all their descriptions (first-seen order)."""
    order: dict[Any, int] = {}
    texts: list[list[str]] = []
    for p in pairs:
        i = order.setdefault(p.input, len(order))
        if i == len(texts):
            texts.append([])
        for d in p.descriptions:
            if d not in texts[i]:
                texts[i].append(d)
    return list(order), texts


def train_modality_head(
    db: Database, home: Path, device: Device, space: Space, job: HeadJob, *, progress: bool | None = None
) -> HeadReport:
    started = time.perf_counter()
    name = check_name(job.modality)
    if name == TEXT:
        raise InvalidInput("the text modality is the space itself: it has no head to train")
    with db.session() as session:
        existing = get_modality(session, space, name)
        if existing is None and name not in (IMAGE, *WELL_KNOWN_FEATURES):
            find_modality(session, space, name)  # raises: unknown modality, with the hint to register it
    if name == IMAGE:
        if job.features is not None:
            raise InvalidInput("--features is for feature modalities; image pairs name image files in \"input\"")
        given = default_image_encoder(space, job.image_encoder) if job.image_encoder else None
        spec = existing.encoder if existing is not None and existing.encoder else default_image_encoder(space, given)
        if given is not None and given != spec:
            raise InvalidInput(f"modality 'image' of space {space.encoder} uses the image encoder {spec}, not {given}: "
                               "its head versions must share one tower")
        pairs = read_pairs(job.pairs, kind="image")
        inputs, sample_texts = _group_samples(pairs)
        image_encoder = build_encoder(spec, device)
        raw = image_encoder.encode_images(inputs, progress=progress)  # [N, d_img]
    else:
        if job.features is None:
            raise InvalidInput(f"modality {name!r} takes feature vectors: give them with --features FILE")
        if job.image_encoder:
            raise InvalidInput("--image-encoder applies to the image modality only")
        fs = read_features(job.features, dim=existing.input_dim if existing is not None else None, modality=name)
        pairs = read_pairs(job.pairs, kind="features", n_rows=len(fs))
        inputs, sample_texts = _group_samples(pairs)
        raw = fs.vectors[np.asarray(inputs, dtype=np.int64)]  # [N, d_in]
    texts = sorted({t for ts in sample_texts for t in ts})
    position = {t: i for i, t in enumerate(texts)}
    text_ids = [[position[t] for t in ts] for ts in sample_texts]
    log.info("%d %s samples, %d distinct descriptions, %d pair lines", len(inputs), name, len(texts), len(pairs))
    text_vectors = build_encoder(space.encoder, device).encode_text(texts, progress=progress)  # [T, d]
    digest = data_digest(raw, texts, text_ids)
    result = train_head(raw, text_vectors, text_ids, job.config, device, progress=progress)
    with db.transaction() as session:
        lock_catalog(session)  # whether this training registers the modality is decided under the lock
        created = get_modality(session, space, name) is None
        if name == IMAGE:
            modality = ensure_image_modality(session, space, image_encoder)
        else:
            modality = register_modality(session, space, name, dim=int(raw.shape[1]))
        modality_id = modality.id
    try:
        row = record_head(db, home, modality_id, result.head, hyperparams=job.config.to_dict(), data_sha256=digest,
                          n_pairs=len(pairs), metrics={**result.metrics, "history": result.history}, activate=False)
    except BaseException:
        if created:  # this training registered the modality: it goes too, if nothing else uses it meanwhile
            drop_modality_if_unused(db, modality_id)
        raise
    reprojected = reproject(db, home, device, modality_id, activate=row.id) if job.activate else 0
    return HeadReport(name, row.version, row.id, job.activate, row.path, len(inputs), len(texts), len(pairs),
                      dict(result.metrics), reprojected, time.perf_counter() - started)
