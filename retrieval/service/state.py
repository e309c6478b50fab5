"""What the service loads once: the database, the device, the space's text encoder, a Recognizer and one
CrossModalSearch per target, built on first use and cached.

The cache is keyed by a *catalog signature* (the space's corpora and their status, the active heads, the
gallery's item count and largest id), read with one cheap query per request: when an ingest, a deletion,
a new head or new gallery items change it, the cached objects are dropped and rebuilt on next use, so new
queries see the change without a restart. Every query runs under one lock (the encoders, GPU FAISS indexes
and the cache are not safe to share between threads), in a worker thread, off the event loop. The lock is
handed over first come, first served, so an ingest job encoding slice after slice cannot starve queries.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sqlalchemy import func, select

from indexer.catalog import find_space
from indexer.device import Device, select_device
from indexer.encoder import Encoder
from indexer.encoder_factory import build_encoder
from indexer.projection import Projection, load_projection
from retrieval.cross_modal_search import CrossModalSearch
from retrieval.recognizer import Recognizer
from retrieval.service.config import ServiceConfig
from retrieval.service.fair_lock import FairLock
from schema import Corpus, Database, Description, Head, Item, Modality, Space

log = logging.getLogger(__name__)


class ServiceState:
    """The long-lived objects of one running service."""

    def __init__(self, config: ServiceConfig, *, db: Database | None = None, device: Device | None = None) -> None:
        self.config = config
        self.db = db or Database(config.database_url)
        self.device = device or select_device(config.device)
        self.lock = FairLock()
        self._signature: tuple[Any, ...] | None = None
        self._space: Space | None = None
        self._encoders: dict[str, Encoder] = {}  # by spec: kept across reloads (a model does not change)
        self._recognizer: Recognizer | None = None
        self._searches: dict[str, CrossModalSearch] = {}
        self._projections: dict[str, Projection] = {}

    def preload_encoder(self, encoder: Encoder) -> None:
        """Use an already loaded encoder for its spec (tests, or an embedding process that has one)."""
        with self.lock:
            self._encoders[encoder.spec] = encoder

    # -- start-up -----------------------------------------------------------------------------------------
    def warm(self) -> None:
        """Load the encoder and the recognizer now when the knowledge base has a space (else on first use)."""
        with self.lock:
            try:
                self.recognizer()
            except ValueError as e:  # an empty knowledge base: the service still answers the catalog routes
                log.warning("recognizer not loaded at start-up: %s", e)

    def close(self) -> None:
        self.db.dispose()

    # -- the cache ----------------------------------------------------------------------------------------
    def signature(self) -> tuple[Any, ...]:
        with self.db.session() as session:
            corpora = tuple(session.execute(select(Corpus.id, Corpus.space_id, Corpus.status).order_by(Corpus.id)).all())
            heads = tuple(session.scalars(select(Head.id).where(Head.active.is_(True)).order_by(Head.id)))
            item_count = tuple(session.execute(select(func.count(Item.id), func.max(Item.id))).one())
        return corpora, heads, item_count

    def _refresh(self) -> None:
        """Drop the cached query objects when the catalog changed (call with the lock held)."""
        sig = self.signature()
        if sig != self._signature:
            if self._signature is not None:
                log.info("catalog changed: reloading the recognizer and the search indexes")
            self._recognizer, self._space = None, None
            self._searches.clear()
            self._projections.clear()
            self._signature = sig

    def space(self) -> Space:
        with self.lock:
            self._refresh()
            if self._space is None:
                with self.db.session() as session:
                    self._space = find_space(session, self.config.encoder)
            return self._space

    def encoder(self) -> Encoder:
        space = self.space()
        with self.lock:
            if space.encoder not in self._encoders:
                log.info("loading encoder %s on %s", space.encoder, self.device.describe())
                self._encoders[space.encoder] = build_encoder(space.encoder, self.device)
            return self._encoders[space.encoder]

    def current_encoder(self) -> str | None:
        """The served space's encoder spec (``config.encoder`` when the knowledge base has no space yet)."""
        with self.db.session() as session:
            if not session.scalar(select(func.count(Space.id))):
                return self.config.encoder
            return find_space(session, self.config.encoder).encoder

    def corpus_exists(self, name: str, encoder: str) -> bool:
        """Whether the space of ``encoder`` has a complete corpus named ``name``."""
        from schema import CorpusStatus

        with self.db.session() as session:
            return bool(session.scalar(select(func.count(Corpus.id)).join(Space, Space.id == Corpus.space_id).where(
                Space.encoder == encoder, Corpus.name == name, Corpus.status == CorpusStatus.COMPLETE)))

    def encoder_for(self, spec: str) -> Encoder:
        """The loaded encoder for ``spec`` (an ingest's), loaded once and kept."""
        from indexer.encoder_factory import parse_encoder_spec

        key = str(parse_encoder_spec(spec))
        with self.lock:
            if key not in self._encoders:
                log.info("loading encoder %s on %s", key, self.device.describe())
                self._encoders[key] = build_encoder(key, self.device)
            return self._encoders[key]

    def recognizer(self) -> Recognizer:
        with self.lock:
            space, encoder = self.space(), self.encoder()
            if self._recognizer is None:
                self._recognizer = Recognizer(self.db, self.device, encoder=space.encoder, encoder_obj=encoder)
            return self._recognizer

    def search(self, target: str) -> CrossModalSearch:
        with self.lock:
            space = self.space()
            if target not in self._searches:
                self._searches[target] = CrossModalSearch(self.db, self.config.home, self.device, space, target)
            return self._searches[target]

    def projection(self, modality: str) -> Projection:
        with self.lock:
            space, encoder = self.space(), self.encoder()
            if modality not in self._projections:
                self._projections[modality] = load_projection(self.db, space, modality, self.device, text_encoder=encoder)
            return self._projections[modality]

    # -- queries (blocking: call from a worker thread) ----------------------------------------------------
    def vectors(self, *, texts: list[str] | None = None, features: list[list[float]] | None = None,
                modality: str | None = None, images: list[Any] | None = None) -> np.ndarray:
        """[B, d] unit vectors of the space for one kind of query."""
        with self.lock:
            if texts is not None:  # the encoder's unit rows, as the Recognizer and the CLI get them
                return self.encoder().encode_text(list(texts))
            if images is not None:
                return self.projection("image").project(self.projection("image").encoder.encode_images(images))  # type: ignore[union-attr]
            if modality in (None, "text", "image"):
                raise ValueError(f"modality {modality!r} does not take feature vectors: send texts or an image")
            return self.projection(modality).features(np.asarray(features, dtype=np.float32), "features")

    def index_sizes(self) -> list[tuple[str, str, int]]:
        """(space, target, vectors) for the descriptions of each space and each modality's gallery."""
        from schema import CorpusStatus

        with self.db.session() as session:
            rows = [(enc, "descriptions", int(n)) for enc, n in session.execute(
                select(Space.encoder, func.count(Description.id))
                .join(Corpus, Corpus.space_id == Space.id)
                .join(Description, Description.corpus_id == Corpus.id)
                .where(Corpus.status == CorpusStatus.COMPLETE).group_by(Space.encoder))]
            rows += [(enc, name, int(n)) for enc, name, n in session.execute(
                select(Space.encoder, Modality.name, func.count(Item.id))
                .join(Modality, Modality.space_id == Space.id)
                .join(Item, Item.modality_id == Modality.id).group_by(Space.encoder, Modality.name))]
        with self.lock:
            if self._recognizer is not None:
                rows.append((self._recognizer.space.encoder, "centres", int(len(self._recognizer.table.vectors))))
        return rows
