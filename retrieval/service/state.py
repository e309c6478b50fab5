"""What the service loads once, and how queries share it.

- The database, the device and the encoders (by spec) are loaded once and kept.
- The served space is fixed at start: the one ``--encoder`` names, or the only space (with an empty knowledge
  base, the space of the first corpus uploaded). Spaces other processes add later change nothing here.
- The query objects (the space, a Recognizer, one CrossModalSearch per target, the projections) belong to a
  :class:`Snapshot` of one *catalog version*, the counter every publish in the store bumps (one primary-key
  read per request). When it moves (an ingest, a deletion, a head switch, gallery items, centres, a compaction,
  by this process or any other) one thread builds a new snapshot while the other queries keep answering from
  the old one; then the new one replaces it. Its searches load only the segments the old one did not have.
- A query keeps the snapshot it started with and reads that version's rows (``unibind.schema.versions``): a
  corpus deleted or replaced meanwhile still answers whole, text and labels included. The process holds a reader
  lease on the oldest version its queries use, so the vacuum keeps those rows until they finish
  (``unibind.indexer.index.readers``). Deletions and replacing uploads therefore never hold queries back.
- Queries run side by side, in worker threads off the event loop. Encoder calls hold one first-come,
  first-served lock (``compute``: a fast tokenizer is not thread-safe), in slices, so an ingest job's
  encoding lets queries in between; on a GPU all compute holds it. (The store's own catalog version and lock
  are ``unibind.schema.store_state``.)
- A query becomes vectors of the space through the library's one function for it
  (``unibind.indexer.modalities.projection.query_vectors``), with the snapshot's projections.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from unibind.indexer.store.contents import find_space
from unibind.indexer.runtime.device import Device, select_device
from unibind.indexer.encoders.spec import parse_encoder_spec
from unibind.indexer.encoders.base import Encoder
from unibind.indexer.encoders.factory import adopt_encoder, build_encoder
from unibind.indexer.modalities.projection import Projection, load_projection, no_image_queries
from unibind.retrieval.search.cross_modal import CrossModalSearch
from unibind.retrieval.recognition.recognizer import Recognizer
from unibind.retrieval.service.config import ServiceConfig
from unibind.indexer.index.readers import HOLD_ATTEMPTS, ReaderLeaseHolder, VersionGone
from unibind.retrieval.service.locks import FairLock, LockedEncoder
from unibind.schema import Corpus, Database, Description, Item, Modality, Space
from unibind.schema.errors import Conflict, InvalidInput, UnibindError
from unibind.schema.store_state import catalog_version

log = logging.getLogger(__name__)
CHANGING_TOO_FAST = "the catalog keeps changing faster than this service can follow; try again"
T = TypeVar("T")


class Snapshot:
    """The query objects of one catalog state. Each part is built once (under the service's build lock, so two
    snapshots never build centres at once) and then only read, without a lock."""

    def __init__(self, state: ServiceState, signature: int) -> None:
        self.signature = signature
        self.version = signature  # the catalog version its searches read (centre builds may move ``signature``)
        self._state = state
        self._space: Space | None = None
        self._recognizer: Recognizer | None = None
        self._searches: dict[str, CrossModalSearch] = {}
        self._projections: dict[str, Projection] = {}

    def space(self) -> Space:
        if self._space is None:
            with self._state.build_lock:
                if self._space is None:
                    spec = self._state.served_spec()
                    if spec is None:
                        raise Conflict("the knowledge base is empty: ingest a corpus first (POST /v1/corpora, or "
                                       "unibind ingest FILE --name N --encoder SPEC)")
                    with self._state.db.session() as session:
                        self._space = find_space(session, spec)
        return self._space

    def encoder(self) -> LockedEncoder:
        return self._state.encoder_for(self.space().encoder)

    def recognizer(self) -> Recognizer:
        if self._recognizer is None:
            with self._state.build_lock:
                if self._recognizer is None:
                    space, st = self.space(), self._state
                    recognizer = Recognizer(st.db, st.device, encoder=space.encoder,
                                            encoder_obj=self.encoder())  # type: ignore[arg-type]
                    self._adopt(recognizer.build_report.versions if recognizer.build_report else ())
                    self._recognizer = recognizer
        return self._recognizer

    def _adopt(self, versions: tuple[int, ...]) -> None:
        """Centres this snapshot built bumped the catalog version; when those bumps follow its own version with
        nothing else in between, the catalog is still the one it holds, so it keeps serving without a rebuild."""
        if versions and list(versions) == list(range(self.signature + 1, self.signature + 1 + len(versions))):
            self.signature = versions[-1]

    @property
    def loaded_recognizer(self) -> Recognizer | None:
        return self._recognizer

    def _part(self, parts: dict[str, T], key: str, build: Callable[[], T]) -> T:
        found = parts.get(key)
        if found is None:
            with self._state.build_lock:
                found = parts.get(key)
                if found is None:
                    found = parts[key] = build()
        return found

    def search(self, target: str) -> CrossModalSearch:
        st = self._state
        return self._part(self._searches, target,
                          lambda: CrossModalSearch(st.db, st.config.home, st.device, self.space(), target,
                                                   version=self.version))

    def projection(self, modality: str) -> Projection:
        st = self._state
        return self._part(self._projections, modality, lambda: load_projection(
            st.db, self.space(), modality, st.device, home=st.config.home,
            text_encoder=self.encoder()))  # type: ignore[arg-type]

    def check_takes_images(self) -> None:
        """Conflict when the space cannot take image queries (no image tower, no active image head)."""
        space = self.space()
        with self._state.db.session() as session:
            if not takes_images(session, space):
                raise Conflict(no_image_queries(space.encoder))

    def build_like(self, previous: Snapshot) -> None:
        """Build now the parts ``previous`` had loaded, so queries never wait for them (a part the new catalog
        cannot have, such as a recognizer after the last corpus went, is left for the queries to report)."""
        parts = [self.recognizer] if previous._recognizer is not None else []
        parts += [lambda t=t: self.search(t) for t in list(previous._searches)]
        parts += [lambda m=m: self.projection(m) for m in list(previous._projections)]
        for build in parts:
            try:
                build()
            except UnibindError as e:
                log.warning("the new catalog: %s", e)


class ServiceState:
    """The long-lived objects of one running service."""

    def __init__(self, config: ServiceConfig, *, db: Database | None = None, device: Device | None = None) -> None:
        self.config = config
        self.db = db or Database(config.database_url, vectors=config.vectors)
        self.device = device or select_device(config.device, faiss_fp16=config.fp16)
        self.compute = FairLock()  # encoder calls; all compute on a GPU
        self.readers = ReaderLeaseHolder(self.db)  # the oldest catalog version this process's queries read
        self.build_lock = threading.RLock()  # builds of snapshot parts (centres, indexes), one at a time
        self._snapshot: Snapshot | None = None
        self._rebuild = threading.Lock()  # one new snapshot at a time
        self._spec_lock = threading.Lock()
        self._spec: str | None = str(parse_encoder_spec(config.encoder)) if config.encoder else None
        if self._spec is None:
            self.served_spec()  # the only space, fixed now (several: the service must be told which)

    def preload_encoder(self, encoder: Encoder) -> None:
        """Use an already loaded encoder for its spec (tests, or an embedding process that has one)."""
        adopt_encoder(encoder, self.device)

    # -- start-up -----------------------------------------------------------------------------------------
    def warm(self) -> None:
        """Load the encoder and the recognizer now when the knowledge base has a space (else on first use)."""
        try:
            self.snapshot().recognizer()
        except UnibindError as e:  # an empty knowledge base: the service still answers the other routes
            log.warning("recognizer not loaded at start-up: %s", e)

    def close(self) -> None:
        self.readers.close()
        self.db.dispose()
        milvus = sys.modules.get("unibind.indexer.index.milvus_backend")
        if milvus is not None and self.db.vectors:  # the process's Milvus connection (and milvus-lite server)
            from unibind.schema.settings import parse_vectors_spec

            spec = parse_vectors_spec(self.db.vectors)
            if spec.uri is not None:
                milvus.close_shared(spec.uri)

    # -- the served space ---------------------------------------------------------------------------------
    def served_spec(self) -> str | None:
        """The encoder spec of the served space: fixed at start, or (the knowledge base empty then) at the first
        space that appears; None while there is none. Conflict when several exist and none was named."""
        if self._spec is None:
            with self._spec_lock, self.db.session() as session:
                if self._spec is None:
                    encoders = list(session.scalars(select(Space.encoder).order_by(Space.id)))
                    if len(encoders) > 1:
                        raise Conflict(f"several spaces exist ({', '.join(encoders)}): start the service with "
                                       "--encoder SPEC to say which one it serves")
                    if encoders:
                        self._spec = encoders[0]
                        log.info("serving the space %s", self._spec)
        return self._spec

    def check_upload_encoder(self, given: str | None) -> str:
        """The encoder an upload ingests with: the served space's; a different one is refused (one service serves
        one space), and with an empty knowledge base the upload's encoder becomes the served space."""
        spec = self.served_spec()
        given_spec = str(parse_encoder_spec(given)) if given else None  # not a spec at all: InvalidInput
        if spec is None:
            if given_spec is None:
                raise InvalidInput("the knowledge base is empty: give the form field 'encoder' (e.g. minilm)")
            with self._spec_lock:
                self._spec = self._spec or given_spec
                spec = self._spec
        if given_spec is not None and given_spec != spec:
            raise Conflict(f"this service serves the space {spec}; a corpus for {given_spec} must be ingested "
                           f"with `unibind ingest --encoder {given_spec}` (or served by a service started with "
                           f"--encoder {given_spec})")
        return spec

    def release_unmade_space(self) -> None:
        """After an upload failed on what was an empty knowledge base: the space it named was not made, so the next
        upload may name another encoder."""
        if self.config.encoder:
            return
        with self._spec_lock, self.db.session() as session:
            if self._spec and not session.scalar(select(func.count(Space.id)).where(Space.encoder == self._spec)):
                self._spec = None

    def signature(self) -> int:
        """The catalog version: what a snapshot was built from."""
        with self.db.session() as session:
            return catalog_version(session)

    def snapshot(self, *, wait: bool = False) -> Snapshot:
        """The query objects of the current catalog. When it changed and another thread is already building
        the new snapshot, the previous one is returned (a whole, slightly older catalog) unless ``wait``."""
        current = self._snapshot
        if current is not None and current.signature == self.signature():
            return current
        if current is not None and not wait and not self._rebuild.acquire(blocking=False):
            return current
        if current is None or wait:
            self._rebuild.acquire()
        try:
            signature, current = self.signature(), self._snapshot  # read again: another build may have just ended
            if current is not None and current.signature == signature:
                return current
            fresh = self._leased(signature)
            if current is not None:
                log.info("catalog changed: building the new recognizer and search indexes")
                fresh.build_like(current)  # before it is published, so queries never wait for it
            self._snapshot = fresh
            self.readers.serve(fresh.version)  # the lease rises to the oldest version queries still read
            return fresh
        finally:
            self._rebuild.release()

    def _leased(self, signature: int) -> Snapshot:
        """A new snapshot of ``signature``, whose rows this process's reader lease keeps from the vacuum (when the
        vacuum has just passed it, of the newest version instead)."""
        for _ in range(HOLD_ATTEMPTS):
            try:
                self.readers.prepare(signature)
                return Snapshot(self, signature)
            except VersionGone:
                signature = self.signature()
        raise Conflict(CHANGING_TOO_FAST)

    def refresh(self) -> Snapshot:
        """Move to the current catalog now (after a change this process made), waiting for the build."""
        return self.snapshot(wait=True)

    @contextmanager
    def query(self) -> Iterator[Snapshot]:
        """A query's snapshot; the reader lease keeps its version's rows while the query runs."""
        for _ in range(HOLD_ATTEMPTS):
            snapshot = self.snapshot()
            if self.readers.use(snapshot.version):
                break
            # the service moved to a newer snapshot just now, and the lease with it: take that one
        else:
            raise Conflict(CHANGING_TOO_FAST)
        try:
            yield snapshot
        finally:
            self.readers.release(snapshot.version)

    def device_work(self) -> AbstractContextManager[Any]:
        """Around a query's index search: the compute lock on a GPU (its indexes and streams serve one
        thread at a time), nothing on the CPU, where FAISS and torch searches run side by side."""
        on_gpu = self.device.is_cuda or self.device.faiss_gpu is not None
        return self.compute if on_gpu else nullcontext()

    # -- encoders and the catalog -------------------------------------------------------------------------
    def encoder_for(self, spec: str) -> LockedEncoder:
        """The loaded encoder for ``spec`` (the space's, or an ingest's), behind the compute lock; the factory's
        one cache loads it once and keeps it."""
        return LockedEncoder(build_encoder(spec, self.device), self.compute)

    def served_space(self, session: Session) -> Space | None:
        """The served space; None while it does not exist yet (an empty knowledge base)."""
        spec = self.served_spec()
        if spec is None:
            return None
        return session.scalars(select(Space).where(Space.encoder == spec)).first()

    def corpus_exists(self, name: str, encoder: str) -> bool:
        """Whether the space of ``encoder`` has a complete corpus named ``name``."""
        from unibind.schema import CorpusStatus

        with self.db.session() as session:
            return bool(session.scalar(select(func.count(Corpus.id)).join(Space, Space.id == Corpus.space_id).where(
                Space.encoder == encoder, Corpus.name == name, Corpus.status == CorpusStatus.COMPLETE)))

    def index_sizes(self) -> list[tuple[str, str, int]]:
        """(space, target, vectors) for the descriptions of each space and each modality's gallery."""
        from unibind.schema import CorpusStatus
        from unibind.schema.versions import live_item

        with self.db.session() as session:
            rows = [(enc, "descriptions", int(n)) for enc, n in session.execute(
                select(Space.encoder, func.count(Description.id))
                .join(Corpus, Corpus.space_id == Space.id)
                .join(Description, Description.corpus_id == Corpus.id)
                .where(Corpus.status == CorpusStatus.COMPLETE).group_by(Space.encoder))]
            rows += [(enc, name, int(n)) for enc, name, n in session.execute(
                select(Space.encoder, Modality.name, func.count(Item.id))
                .join(Modality, Modality.space_id == Space.id)
                .join(Item, Item.modality_id == Modality.id).where(live_item(Modality.id))
                .group_by(Space.encoder, Modality.name))]
        snapshot = self._snapshot
        recognizer = snapshot.loaded_recognizer if snapshot is not None else None
        if recognizer is not None:
            rows.append((recognizer.space.encoder, "centres", int(len(recognizer.table.vectors))))
        return rows


def takes_images(session: Session, space: Space) -> bool:
    """Whether image uploads can be queried in ``space``: it has an image tower, or an active image head."""
    from unibind.indexer.modalities.projection import has_image_tower
    from unibind.indexer.modalities.registry import IMAGE, get_modality
    from unibind.indexer.modalities.versions import active_head

    if has_image_tower(space.encoder):
        return True
    modality = get_modality(session, space, IMAGE)
    return modality is not None and active_head(session, modality) is not None


def service_of(request: Any) -> ServiceState:
    """The state a running app loaded (``request.app.state.service``)."""
    return request.app.state.service  # type: ignore[no-any-return]
