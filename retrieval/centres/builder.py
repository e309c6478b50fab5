"""Embedding centre localisation: build, persist, reuse and load the centres of a knowledge base.

A centre is keyed by (space, category, base-prompt template, K, strategy, corpora drawn from). Building
reuses every centre whose key still holds and computes the rest, in batches of categories, with a
progress bar. Ingesting, replacing or deleting a corpus deletes the centres of its categories and every centre
no key reaches any more (``unibind.indexer.store.contents.invalidate_centres``, ``prune_centres``), so they are rebuilt on next
use and never pile up.

Each batch is computed first and then written in one transaction that bumps the catalog version: it checks,
under that lock, that the corpora drawn from are still complete and skips any centre another process (a CLI
``recognize`` beside a running service) wrote meanwhile, so concurrent builders never collide.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import insert, select
from sqlalchemy.orm import Session
from tqdm.auto import tqdm

from unibind.indexer.store.centre_keys import ALL_CORPORA, complete_corpus_ids, corpora_key
from unibind.indexer.encoders.base import Encoder
from unibind.indexer.runtime.vectors import from_bytes, normalize, to_bytes
from unibind.retrieval.centres.strategies import DEFAULT_K, DEFAULT_STRATEGY, KB_FREE, SKELETON_AWARE, Candidates, Context, find_template_skeletons, get_strategy
from unibind.retrieval.centres.prompts import BASE_PROMPT, fill
from unibind.schema import Category, Centre, CentreMember, Corpus, CorpusStatus, Database, Description, Space
from unibind.schema.errors import Conflict, InvalidInput, NotFound
from unibind.schema.store_state import bump_version

log = logging.getLogger(__name__)

MAX_TEMPLATE_CHARS = 500
MAX_CENTRE_SIZE = 100_000  # K: far above any category's descriptions, and every store's integers hold it
BATCH_CATEGORIES = 200


@dataclass(frozen=True)
class CentreSpec:
    """Which centres: base-prompt template, K, strategy, and the corpora to draw from (None: all complete)."""

    template: str = BASE_PROMPT
    k: int = DEFAULT_K
    strategy: str = DEFAULT_STRATEGY
    corpora: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        fill(self.template, "x")  # validates the template
        if len(self.template) > MAX_TEMPLATE_CHARS:
            raise InvalidInput(f"prompt template is {len(self.template)} characters long; at most {MAX_TEMPLATE_CHARS}")
        get_strategy(self.strategy)
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 1 <= self.k <= MAX_CENTRE_SIZE:
            raise InvalidInput(f"K (the centre size) must be an integer from 1 to {MAX_CENTRE_SIZE:,}, got {self.k!r}")


class CorporaChanged(Conflict):
    """Another process published or removed a corpus while centres were built from the previous set."""


class CentreNotBuilt(Conflict):
    """A spec's centres (or one category's) are not built yet for the current corpora: ``unibind centres build``
    makes them (``recognize`` builds missing ones itself). The CLI and the service both answer with this type."""


def build_command(spec: CentreSpec) -> str:
    """The ``unibind centres build`` command that builds ``spec``'s centres."""
    import shlex

    words = ["unibind", "centres", "build", "--strategy", spec.strategy, "--centre-size", str(spec.k)]
    if spec.template != BASE_PROMPT:
        words += ["--template", spec.template]
    if spec.corpora is not None:
        words += ["--corpus", ",".join(spec.corpora)]
    return shlex.join(words)


@dataclass(frozen=True)
class BuildReport:
    categories: int
    built: int
    reused: int
    notices: list[str]
    versions: tuple[int, ...] = ()  # the catalog versions this build's commits produced, in order


def selected_corpora(session: Session, space: Space, names: Sequence[str] | None) -> dict[int, str]:
    """{id: name} of the complete corpora to draw from; unknown or incomplete names are errors."""
    rows = dict(
        session.execute(
            select(Corpus.id, Corpus.name).where(Corpus.space_id == space.id, Corpus.status == CorpusStatus.COMPLETE)
        ).all()
    )
    if names is None:
        if not rows:
            raise Conflict(f"the knowledge base of space {space.encoder!r} has no complete corpus: ingest one first")
        return rows
    by_name = {n: i for i, n in rows.items()}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise NotFound(f"no complete corpus named {', '.join(map(repr, missing))} in space {space.encoder!r} (corpora: {', '.join(sorted(by_name)) or 'none'})")
    return {by_name[n]: n for n in names}


def category_keys(session: Session, corpora: dict[int, str], strategy: str) -> dict[int, tuple[str, str]]:
    """{category id: (name, corpora key)} for every category of the selected corpora."""
    stmt = (
        select(Description.category_id, Category.name, Description.corpus_id)
        .join(Category, Description.category_id == Category.id)
        .where(Description.corpus_id.in_(corpora))
        .distinct()
    )
    found: dict[int, tuple[str, set[int]]] = {}
    for cat_id, name, corpus_id in session.execute(stmt):
        found.setdefault(cat_id, (name, set()))[1].add(corpus_id)
    everything = ALL_CORPORA + corpora_key(corpora)
    return {
        # knowledge's and informative's template filter looks at every selected category: its centres depend on all corpora
        cat_id: (name, "" if strategy in KB_FREE else everything if strategy in SKELETON_AWARE else corpora_key(ids))
        for cat_id, (name, ids) in found.items()
    }


@dataclass(frozen=True)
class CentreScope:
    """What a spec's centres are drawn from right now: the selected corpora and each category's key."""

    corpora: dict[int, str]  # {corpus id: name}
    keys: dict[int, tuple[str, str]]  # {category id: (name, corpora key)}


def centre_scope(db: Database, space: Space, spec: CentreSpec) -> CentreScope:
    with db.session() as session:
        corpora = selected_corpora(session, space, spec.corpora)
        return CentreScope(corpora, category_keys(session, corpora, spec.strategy))


class CentreBuilder:
    """Builds the centres of one space with its encoder."""

    def __init__(self, db: Database, space: Space, encoder: Encoder) -> None:
        if encoder.spec != space.encoder:
            raise InvalidInput(f"encoder {encoder.spec!r} does not define space {space.encoder!r}")
        self.db, self.space, self.encoder = db, space, encoder

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode texts, reusing stored vectors of identical descriptions in this space (no re-encoding)."""
        from unibind.indexer.readers.text import text_hash

        texts = list(texts)
        wanted = set(texts)
        hashes = [text_hash(t) for t in texts]
        with self.db.session() as session:
            stmt = (
                select(Description.text, Description.vector)
                .join(Corpus, Description.corpus_id == Corpus.id)
                .where(Corpus.space_id == self.space.id, Description.text_hash.in_(set(hashes)))
            )
            known = {text_hash(t): v for t, v in session.execute(stmt) if t in wanted}  # the exact text only
        out = np.empty((len(texts), self.space.dim), dtype=np.float32)
        todo = [i for i, h in enumerate(hashes) if h not in known]
        for i, h in enumerate(hashes):
            if h in known:
                out[i] = from_bytes([known[h]], self.space.dim)[0]
        if todo:
            out[todo] = self.encoder.encode_text([texts[i] for i in todo])
        return normalize(out)

    def build(self, spec: CentreSpec, *, progress: bool | None = None, scope: CentreScope | None = None) -> BuildReport:
        """Build the spec's missing centres; ``scope`` saves recomputing it when the caller has it."""
        strategy = get_strategy(spec.strategy)
        scope = scope or centre_scope(self.db, self.space, spec)
        corpora, keys = scope.corpora, scope.keys
        with self.db.session() as session:
            existing = {
                (cat, key)
                for cat, key in session.execute(
                    select(Centre.category_id, Centre.corpora_key).where(
                        Centre.space_id == self.space.id,
                        Centre.template == spec.template,
                        Centre.k == spec.k,
                        Centre.strategy == spec.strategy,
                    )
                )
            }
            todo = sorted((c for c, (_, key) in keys.items() if (c, key) not in existing), key=lambda c: keys[c][0])
            skeletons: frozenset[str] = frozenset()
            if spec.strategy in SKELETON_AWARE and todo:
                pairs = session.execute(
                    select(Category.name, Description.text)
                    .join(Category, Description.category_id == Category.id)
                    .where(Description.corpus_id.in_(corpora))
                )
                skeletons = find_template_skeletons(pairs, len(keys))
        ctx = Context(encode=self.encode, template_skeletons=skeletons)
        notices: list[str] = []
        versions: list[int] = []
        show = len(todo) >= 50 if progress is None else progress
        with tqdm(total=len(todo), desc=f"centres ({spec.strategy})", unit="category", disable=not show) as bar:
            for start in range(0, len(todo), BATCH_CATEGORIES):
                batch = todo[start : start + BATCH_CATEGORIES]
                batch_notices, version = self._build_batch(batch, keys, corpora, spec, strategy, ctx)
                notices += batch_notices
                versions.append(version)
                bar.update(len(batch))
        for n in notices:
            log.debug("%s", n)
        if notices:
            log.info("%d categories with notices, e.g. %s", len(notices), notices[0])
        return BuildReport(categories=len(keys), built=len(todo), reused=len(keys) - len(todo), notices=notices,
                           versions=tuple(versions))

    def _build_batch(self, cats, keys, corpora, spec, strategy, ctx) -> tuple[list[str], int]:  # type: ignore[no-untyped-def]
        names = [keys[c][0] for c in cats]
        prompts = self.encode([fill(spec.template, n) for n in names])  # [b, d]
        candidates: dict[int, list[tuple[int, str, bytes]]] = defaultdict(list)
        if spec.strategy not in KB_FREE:
            with self.db.session() as session:
                stmt = (
                    select(Description.category_id, Description.id, Description.text, Description.vector)
                    .where(Description.category_id.in_(cats), Description.corpus_id.in_(corpora))
                    .order_by(Description.id)
                )
                for cat, i, text, vec in session.execute(stmt):
                    candidates[cat].append((i, text, vec))
        notices, selections = [], []
        for cat, name, prompt in zip(cats, names, prompts):  # computed before the transaction: it stays short
            rows = candidates[cat]
            cand = Candidates(
                category=name,
                ids=np.array([r[0] for r in rows], dtype=np.int64),
                texts=[r[1] for r in rows],
                vectors=from_bytes([r[2] for r in rows], self.space.dim) if rows else np.empty((0, self.space.dim), np.float32),
            )
            sel = strategy(cand, prompt, spec.k, ctx)
            if sel.notice:
                notices.append(sel.notice)
            selections.append((cat, sel, len(rows)))
        with self.db.transaction() as session:
            version = bump_version(session)  # first: one writer of centres (and of corpora) at a time
            complete = complete_corpus_ids(session, self.space.id)
            if not set(corpora) <= complete or (spec.corpora is None and set(corpora) != complete):
                # keys drawn from another set of corpora would be dead rows as soon as they were written
                raise CorporaChanged("the corpora changed while the centres were built (an ingest, a replace or a "
                                     "delete by another process): run again")
            written = {(cat, key) for cat, key in session.execute(select(Centre.category_id, Centre.corpora_key).where(
                Centre.space_id == self.space.id, Centre.category_id.in_(cats), Centre.template == spec.template,
                Centre.k == spec.k, Centre.strategy == spec.strategy))}
            for cat, sel, n_candidates in selections:
                if (cat, keys[cat][1]) in written:  # another builder wrote this centre meanwhile: the same members
                    continue
                centre = Centre(
                    space_id=self.space.id, category_id=cat, template=spec.template, k=spec.k,
                    strategy=spec.strategy, corpora_key=keys[cat][1], n_candidates=n_candidates,
                )
                session.add(centre)
                session.flush()
                session.execute(
                    insert(CentreMember),
                    [
                        {"centre_id": centre.id, "description_id": i, "rank": r + 1, "score": float(s), "text": t, "vector": to_bytes(v)}
                        for r, (i, t, v, s) in enumerate(zip(sel.ids, sel.texts, sel.vectors, sel.scores))
                    ],
                )
        return notices, version


def load_centres(
    db: Database, space: Space, spec: CentreSpec, scope: CentreScope | None = None
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(category names, member vectors [M, d], owner [M]) of the current centres; names sorted."""
    keys = (scope or centre_scope(db, space, spec)).keys
    with db.session() as session:
        wanted = {(cat, key) for cat, (_, key) in keys.items()}
        stmt = (
            select(Centre.id, Centre.category_id, Centre.corpora_key)
            .where(Centre.space_id == space.id, Centre.template == spec.template, Centre.k == spec.k, Centre.strategy == spec.strategy)
        )
        centre_cat = {cid: cat for cid, cat, key in session.execute(stmt) if (cat, key) in wanted}
        missing = len(keys) - len(centre_cat)
        if missing:
            raise CentreNotBuilt(f"{missing} of {len(keys)} categories have no current centre: "
                                 f"run `{build_command(spec)}`")
        names = sorted(keys[c][0] for c in centre_cat.values())
        position = {name: i for i, name in enumerate(names)}
        rows = session.execute(
            select(CentreMember.centre_id, CentreMember.vector).where(CentreMember.centre_id.in_(centre_cat)).order_by(CentreMember.id)
        ).all()
    owner = np.array([position[keys[centre_cat[cid]][0]] for cid, _ in rows], dtype=np.int64)
    vectors = from_bytes([v for _, v in rows], space.dim)
    return names, vectors, owner


def centre_members(db: Database, space: Space, spec: CentreSpec,
                   category: str) -> tuple[Centre, list[dict[str, object]]]:
    """The current centre of ``category`` and its members (rank, score, text, description id). NotFound for an
    unknown category, CentreNotBuilt when its centre is not built yet."""
    keys = centre_scope(db, space, spec).keys
    with db.session() as session:
        by_name = {name: (cat, key) for cat, (name, key) in keys.items()}
        if category not in by_name:
            import difflib

            close = difflib.get_close_matches(category, list(by_name), n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise NotFound(f"unknown category {category!r}{hint}")
        cat, key = by_name[category]
        centre = session.scalars(
            select(Centre).where(
                Centre.space_id == space.id, Centre.category_id == cat, Centre.template == spec.template,
                Centre.k == spec.k, Centre.strategy == spec.strategy, Centre.corpora_key == key,
            )
        ).first()
        if centre is None:
            raise CentreNotBuilt(f"no centre yet for {category!r} with {spec.strategy}, K={spec.k}, {spec.template!r}: "
                                 f"run `{build_command(spec)}`")
        members = [
            {"rank": m.rank, "score": m.score, "text": m.text, "description_id": m.description_id} for m in centre.members
        ]
        return centre, members
