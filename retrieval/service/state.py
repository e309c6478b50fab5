"""What the service loads once, and how queries share it.

- The database, the device and the encoders (by spec) are loaded once and kept.
- The query objects (the space, a Recognizer, one CrossModalSearch per target, the projections) belong to a
  :class:`Snapshot` of one *catalog signature*: the space's corpora and their status, the active heads, the
  gallery's item count and largest id, read with one cheap query per request. When the signature changes
  (an ingest, a deletion, a new head, new gallery items) one thread builds a new snapshot while the other
  queries keep answering from the old one; then the new one replaces it. A query keeps the snapshot it
  started with, so every answer comes from one whole catalog.
- Queries run side by side, in worker threads off the event loop. Encoder calls hold one first-come,
  first-served lock (``compute``: a fast tokenizer is not thread-safe), in slices, so an ingest job's
  encoding lets queries in between; on a GPU all compute holds it. A deletion in this process takes the
  catalog lock exclusively: it waits for the queries in flight and, before new ones start, moves the
  service to the new snapshot.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
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
from retrieval.service.locks import FairLock, LockedEncoder, SharedLock
from schema import Corpus, Database, Description, Head, Item, Modality, Space

log = logging.getLogger(__name__)


class Snapshot:
    """The query objects of one catalog state, each built on first use and then only read."""

    def __init__(self, state: ServiceState, signature: tuple[Any, ...]) -> None:
        self.signature = signature
        self._state = state
        self._lock = threading.RLock()  # builds of this snapshot's parts
        self._space: Space | None = None
        self._recognizer: Recognizer | None = None
        self._searches: dict[str, CrossModalSearch] = {}
        self._projections: dict[str, Projection] = {}

    def space(self) -> Space:
        with self._lock:
            if self._space is None:
                with self._state.db.session() as session:
                    self._space = find_space(session, self._state.config.encoder)
            return self._space

    def encoder(self) -> LockedEncoder:
        return self._state.encoder_for(self.space().encoder)

    def recognizer(self) -> Recognizer:
        with self._lock:
            if self._recognizer is None:
                space, st = self.space(), self._state
                self._recognizer = Recognizer(st.db, st.device, encoder=space.encoder, encoder_obj=self.encoder())  # type: ignore[arg-type]
            return self._recognizer

    @property
    def loaded_recognizer(self) -> Recognizer | None:
        return self._recognizer

    def search(self, target: str) -> CrossModalSearch:
        with self._lock:
            if target not in self._searches:
                st = self._state
                self._searches[target] = CrossModalSearch(st.db, st.config.home, st.device, self.space(), target)
            return self._searches[target]

    def projection(self, modality: str) -> Projection:
        with self._lock:
            if modality not in self._projections:
                st = self._state
                self._projections[modality] = load_projection(st.db, self.space(), modality, st.device,
                                                              text_encoder=self.encoder())  # type: ignore[arg-type]
            return self._projections[modality]

    def vectors(self, *, texts: list[str] | None = None, features: list[list[float]] | None = None,
                modality: str | None = None, images: list[Any] | None = None) -> np.ndarray:
        """[B, d] unit vectors of the space for one kind of query (blocking: call from a worker thread)."""
        if texts is not None:  # the encoder's unit rows, as the Recognizer and the CLI get them
            return self.encoder().encode_text(list(texts))
        if images is not None:
            projection = self.projection("image")
            with self._state.compute:  # an image tower of its own (--image-encoder) is not wrapped
                return projection.project(projection.encoder.encode_images(images))  # type: ignore[union-attr]
        if modality in (None, "text", "image"):
            raise ValueError(f"modality {modality!r} does not take feature vectors: send texts or an image")
        projection = self.projection(modality)
        with self._state.compute:
            return projection.features(np.asarray(features, dtype=np.float32), "features")


class ServiceState:
    """The long-lived objects of one running service."""

    def __init__(self, config: ServiceConfig, *, db: Database | None = None, device: Device | None = None) -> None:
        self.config = config
        self.db = db or Database(config.database_url)
        self.device = device or select_device(config.device)
        self.compute = FairLock()  # encoder calls; all compute on a GPU
        self.catalog = SharedLock()  # queries: shared; a deletion in this process: exclusive
        self._encoders: dict[str, LockedEncoder] = {}  # by spec: kept across snapshots (a model does not change)
        self._encoders_lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._rebuild = threading.Lock()  # one snapshot build at a time

    def preload_encoder(self, encoder: Encoder) -> None:
        """Use an already loaded encoder for its spec (tests, or an embedding process that has one)."""
        with self._encoders_lock:
            self._encoders[encoder.spec] = LockedEncoder(encoder, self.compute)

    # -- start-up -----------------------------------------------------------------------------------------
    def warm(self) -> None:
        """Load the encoder and the recognizer now when the knowledge base has a space (else on first use)."""
        try:
            self.snapshot().recognizer()
        except ValueError as e:  # an empty knowledge base: the service still answers the catalog routes
            log.warning("recognizer not loaded at start-up: %s", e)

    def close(self) -> None:
        self.db.dispose()

    # -- snapshots ----------------------------------------------------------------------------------------
    def signature(self) -> tuple[Any, ...]:
        with self.db.session() as session:
            corpora = tuple(session.execute(select(Corpus.id, Corpus.space_id, Corpus.status).order_by(Corpus.id)).all())
            heads = tuple(session.scalars(select(Head.id).where(Head.active.is_(True)).order_by(Head.id)))
            item_count = tuple(session.execute(select(func.count(Item.id), func.max(Item.id))).one())
        return corpora, heads, item_count

    def snapshot(self, *, wait: bool = False) -> Snapshot:
        """The query objects of the current catalog. When it changed and another thread is already building
        the new snapshot, the previous one is returned (a whole, slightly older catalog) unless ``wait``."""
        signature = self.signature()
        current = self._snapshot
        if current is not None and current.signature == signature:
            return current
        if current is not None and not wait and not self._rebuild.acquire(blocking=False):
            return current
        if current is None or wait:
            self._rebuild.acquire()
        try:
            current = self._snapshot
            if current is not None and current.signature == signature:
                return current
            fresh = Snapshot(self, signature)
            if current is not None and current.loaded_recognizer is not None:
                log.info("catalog changed: building the new recognizer and search indexes")
                try:  # built before it is published, so queries never wait for it
                    fresh.recognizer()
                except ValueError as e:  # e.g. the last corpus was deleted: the queries will say so
                    log.warning("no recognizer for the new catalog: %s", e)
            self._snapshot = fresh
            return fresh
        finally:
            self._rebuild.release()

    def refresh(self) -> Snapshot:
        """Move to the current catalog now (after a change this process made), waiting for the build."""
        return self.snapshot(wait=True)

    @contextmanager
    def query(self) -> Iterator[Snapshot]:
        """A query's snapshot, held with the catalog lock shared; with the compute lock too on a GPU."""
        on_gpu = self.device.is_cuda or self.device.faiss_gpu is not None  # GPU indexes and streams: one user at a time
        with self.catalog.shared():
            snapshot = self.snapshot()  # before the compute lock: a snapshot build takes that lock itself
            with self.compute if on_gpu else nullcontext():
                yield snapshot

    # -- encoders and the catalog -------------------------------------------------------------------------
    def encoder_for(self, spec: str) -> LockedEncoder:
        """The loaded encoder for ``spec`` (the space's, or an ingest's), loaded once and kept."""
        from indexer.encoder_factory import parse_encoder_spec

        key = str(parse_encoder_spec(spec))
        with self._encoders_lock:
            if key not in self._encoders:
                log.info("loading encoder %s on %s", key, self.device.describe())
                self._encoders[key] = LockedEncoder(build_encoder(key, self.device), self.compute)
            return self._encoders[key]

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
        snapshot = self._snapshot
        recognizer = snapshot.loaded_recognizer if snapshot is not None else None
        if recognizer is not None:
            rows.append((recognizer.space.encoder, "centres", int(len(recognizer.table.vectors))))
        return rows
