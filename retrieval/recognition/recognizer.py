"""Recognition as a retrieval call: queries of the space, searched against every centre vector."""

from __future__ import annotations

import logging
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
from unibind.retrieval.recognition.engine import DEFAULT_CENTRING, DEFAULT_ENGINE, DEFAULT_TOP_M, CentreTable, Recognition, RecognitionEngine, check_top_m
from unibind.schema import Database

log = logging.getLogger(__name__)

BUILD_ATTEMPTS = 3  # centres built while another process changed the corpora are built again from the new set


class Recognizer:
    """Loads a space's encoder and centres once (building missing centres), then answers many queries;
    a category scores the mean of its ``top_m`` best centre members (1: the paper's max), in the space centred on
    the knowledge base's mean direction unless ``centring`` is False (the paper's raw cosines)."""

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
        self.centring = bool(centring)
        self.table = table.centred() if self.centring else table
        self.default_engine = engine
        self._engines: dict[str, RecognitionEngine] = {engine: make_engine(engine, self.table, device, self.top_m)}

    @property
    def categories(self) -> list[str]:
        return list(self.table.names)

    def engine(self, name: str | None = None) -> RecognitionEngine:
        """The named engine over the same centres (made on first use)."""
        name = name or self.default_engine
        if name not in self._engines:
            self._engines[name] = make_engine(name, self.table, self.device, self.top_m)
        return self._engines[name]

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
        return self.engine(engine).recognize(queries, k=k, labels=labels)
