"""Recognition as a retrieval call: queries of the space, searched against every centre vector."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import numpy as np

from unibind.indexer.store.contents import find_space
from unibind.indexer.runtime.device import Device
from unibind.indexer.encoders.base import Encoder
from unibind.indexer.encoders.factory import build_encoder
from unibind.retrieval.centres.builder import (
    BuildReport,
    CentreBuilder,
    CentreSpec,
    CorporaChanged,
    centre_scope,
    load_centres,
)
from unibind.retrieval.recognition.engines import make_engine
from unibind.retrieval.recognition.engine import (
    AUTO_DENSE_BELOW,
    DEFAULT_CENTRING,
    DEFAULT_ENGINE,
    DEFAULT_TOP_M,
    ENGINE_CHOICES,
    CentreTable,
    Recognition,
    RecognitionEngine,
    check_top_m,
    dense_fits,
)
from unibind.schema import Database
from unibind.schema.errors import Conflict, InvalidInput
from unibind.schema.settings import parse_vectors_spec

log = logging.getLogger(__name__)

BUILD_ATTEMPTS = 3  # centres built while another process changed the corpora are built again from the new set


class Recognizer:
    """Loads a space's encoder and centres once (building missing centres), then answers many queries;
    a category scores the mean of its ``top_m`` best centre members (1: the paper's max), in the space centred on
    the centre members' mean direction unless ``centring`` is False (the paper's raw cosines)."""

    def __init__(
        self,
        db: Database,
        device: Device,
        *,
        encoder: str | None = None,
        spec: CentreSpec | None = None,
        engine: str = DEFAULT_ENGINE,
        top_m: int = DEFAULT_TOP_M,
        centring: bool = DEFAULT_CENTRING,
        build_missing: bool = True,
        encoder_obj: Encoder | None = None,
    ) -> None:
        if engine not in ENGINE_CHOICES:  # before any work
            raise InvalidInput(f"unknown recognition engine {engine!r}; engines: {', '.join(ENGINE_CHOICES)}")
        self.db, self.device = db, device
        self.top_m = check_top_m(top_m)
        self.spec = spec or CentreSpec()
        with db.session() as session:
            self.space = find_space(session, encoder)
        self.encoder = encoder_obj or build_encoder(self.space.encoder, device)
        self.build_report: BuildReport | None = None
        for attempt in range(1, BUILD_ATTEMPTS + 1):
            scope = centre_scope(db, self.space, self.spec)  # one scan for both steps
            try:
                if build_missing:
                    self.build_report = CentreBuilder(db, self.space, self.encoder).build(self.spec, scope=scope)
                    if self.build_report.built:
                        log.info("built %d centres (%d reused)", self.build_report.built, self.build_report.reused)
                names, vectors, owner = load_centres(db, self.space, self.spec, scope)
                break
            except CorporaChanged:
                if attempt == BUILD_ATTEMPTS:
                    raise
                log.info("the corpora changed while the centres were built; again from the new set")
        table = CentreTable(names=names, vectors=vectors, owner=owner)
        self.table = table.centred() if centring else table
        self.default_engine = engine
        self._engines: dict[str, RecognitionEngine] = {}
        self._engines_lock = threading.Lock()  # a service's threads share one recognizer
        self.engine(None, batch=1)  # built now, not on the first query: the single-query engine

    @property
    def centring(self) -> bool:
        """Whether scores are centred (False too where centring found nothing to centre on)."""
        return self.table.mean is not None

    @property
    def categories(self) -> list[str]:
        return list(self.table.names)

    def engine(self, name: str | None = None, *, batch: int = 1) -> RecognitionEngine:
        """The named engine over the same centres (made on first use); "auto" (the default) is the dense engine for
        a ``batch`` below AUTO_DENSE_BELOW queries and FAISS from there on, and FAISS always when the dense engine's
        padded copy would be large (``dense_fits``): both give identical answers."""
        name = name or self.default_engine
        if name == "auto":
            name = "dense" if batch < AUTO_DENSE_BELOW and dense_fits(self.table) else "faiss"
        engine = self._engines.get(name)
        if engine is None:
            with self._engines_lock:
                engine = self._engines.get(name)
                if engine is None:
                    engine = self._engines[name] = self._make(name)
        return engine

    def _make(self, name: str) -> RecognitionEngine:
        """The engine called ``name``; with index vectors in Milvus (``--vectors``), the FAISS engine's search runs
        on a Milvus collection of the centre members (shared by every replica recognising with the same table)."""
        spec = parse_vectors_spec(self.db.vectors)
        if name != "faiss" or spec.kind == "faiss":
            return make_engine(name, self.table, self.device, self.top_m)
        from unibind.retrieval.recognition.backend_engine import BackendEngine, milvus_centres

        assert spec.uri is not None
        backend, fill = milvus_centres(spec.uri, self.db.identity, self.space.id, self.table)
        return BackendEngine(self.table, self.device, backend, top_m=self.top_m, fill=fill)

    def recognize_texts(
        self, texts: Sequence[str], k: int = 5, labels: Sequence[str] | None = None, engine: str | None = None
    ) -> list[Recognition]:
        if not texts:
            return []
        return self.recognize_vectors(self.encoder.encode_text(list(texts)), k=k, labels=labels, engine=engine)

    def recognize_vectors(
        self, queries: np.ndarray, k: int = 5, labels: Sequence[str] | None = None, engine: str | None = None
    ) -> list[Recognition]:
        """[B, d] vectors of the space → top-k categories per query."""
        batch = int(np.shape(queries)[0]) if np.ndim(queries) == 2 else 1
        chosen = self.engine(engine, batch=batch)
        try:
            return chosen.recognize(queries, k=k, labels=labels)
        except Conflict:
            if chosen.name != "backend":
                raise
            # its Milvus collection was dropped (a new centre table elsewhere evicted it) or emptied: make it again
            log.warning("the centre members' Milvus collection went away; filling it again")
            with self._engines_lock:
                for key in [key for key, e in self._engines.items() if e is chosen]:
                    del self._engines[key]
            return self.engine(engine, batch=batch).recognize(queries, k=k, labels=labels)
