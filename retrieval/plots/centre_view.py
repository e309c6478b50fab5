"""What a centre plot shows, gathered from the store: one category's centre members, the rest of its descriptions,
its base prompt, and the centres of the ``neighbours`` categories nearest to it.

The centres are the ones recognition uses, in the space it scores in (centred on the knowledge base's mean
direction, see ``CentreTable.centred``): the same spec, loaded with ``load_centres`` (or taken from a loaded
recognizer's table), and, when a device is given, missing ones are built first by a ``Recognizer``, exactly as
``unibind recognize`` builds them. Nearest means the highest cosine between the centres' mean vectors (each mean
normalised to unit length), ties broken by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import select

from unibind.indexer.encoders.base import Encoder
from unibind.indexer.runtime.device import Device
from unibind.indexer.runtime.vectors import from_bytes
from unibind.retrieval.centres.builder import (
    CentreBuilder,
    CentreNotBuilt,
    CentreSpec,
    centre_members,
    load_centres,
    selected_corpora,
)
from unibind.retrieval.centres.prompts import fill
from unibind.retrieval.plots.neighbours import DEFAULT_NEIGHBOURS, check_neighbours, nearest
from unibind.retrieval.recognition.engine import CentreTable
from unibind.schema import Database, Description, Space

MAX_OTHERS = 5_000  # the category's other descriptions drawn (the first, by id)


@dataclass(frozen=True)
class Neighbour:
    category: str
    cosine: float  # between this centre's mean vector and the category's
    vectors: np.ndarray  # [m, d] its centre members


@dataclass(frozen=True)
class CentreView:
    category: str
    spec: CentreSpec
    prompt: str  # the filled-in base prompt
    prompt_vector: np.ndarray  # [d]
    members: np.ndarray  # [m, d] the category's centre members
    others: np.ndarray  # [r, d] its descriptions that are not members
    candidates: int  # the descriptions its centre was chosen from
    neighbours: list[Neighbour]
    centred: bool = False  # drawn in the space centred on the centre members' mean direction (as recognition scores)

    def points(self) -> np.ndarray:
        """Every vector the picture shows, in one array: members, others, the prompt, then each neighbour's members
        (the order ``figures.centre_png`` splits them back by)."""
        parts = [self.members, self.others, self.prompt_vector[None, :], *(n.vectors for n in self.neighbours)]
        return np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1, self.prompt_vector.shape[0]) for p in parts])


def _table(db: Database, space: Space, spec: CentreSpec, encoder: Encoder, device: Device | None) -> CentreTable:
    if device is not None:
        from unibind.retrieval.recognition.recognizer import Recognizer

        return Recognizer(db, device, encoder=space.encoder, spec=spec, encoder_obj=encoder).table  # builds missing
    names, vectors, owner = load_centres(db, space, spec)  # missing ones: CentreNotBuilt
    return CentreTable(names=names, vectors=vectors, owner=owner).centred()  # the recognizer's default space


def gather(db: Database, space: Space, spec: CentreSpec, category: str, encoder: Encoder, *,
           neighbours: int = DEFAULT_NEIGHBOURS, device: Device | None = None,
           table: CentreTable | None = None) -> CentreView:
    """The data of ``category``'s centre plot. ``table``: the spec's centres when the caller has them loaded (a
    service's recognizer); ``device``: build missing centres first (else a missing one is CentreNotBuilt). An
    unknown category is NotFound with close names, before anything is built. Nearest: see ``neighbours``."""
    check_neighbours(neighbours)
    try:
        found = centre_members(db, space, spec, category)  # unknown: NotFound, with a did-you-mean
    except CentreNotBuilt:
        if device is None:
            raise
        found = None
    if table is None:
        table = _table(db, space, spec, encoder, device)
    if found is None:
        found = centre_members(db, space, spec, category)
    centre, members = found
    if category not in table.names:  # the table of another catalog than the centre just read
        raise CentreNotBuilt(f"no loaded centre for {category!r}; try again")
    member_ids = {m["description_id"] for m in members if m["description_id"] is not None}
    with db.session() as session:
        corpora = selected_corpora(session, space, spec.corpora)
        rows = session.execute(
            select(Description.id, Description.vector)
            .where(Description.category_id == centre.category_id, Description.corpus_id.in_(corpora))
            .order_by(Description.id)
        ).all()
    rest = [v for i, v in rows if i not in member_ids][:MAX_OTHERS]
    # everything drawn in the space recognition scores in: centred like the table's members when the table is
    others = table.prepare(from_bytes(rest, space.dim)) if rest else np.empty((0, space.dim), dtype=np.float32)
    prompt = fill(spec.template, category)
    prompt_vector = table.prepare(CentreBuilder(db, space, encoder).encode([prompt]))[0]
    position = table.names.index(category)
    near = [Neighbour(name, cos, table.vectors[table.owner == table.names.index(name)])
            for name, cos in nearest(table.names, table.vectors, table.owner, category, neighbours)]
    return CentreView(category=category, spec=spec, prompt=prompt, prompt_vector=prompt_vector,
                      members=table.vectors[table.owner == position], others=others,
                      candidates=int(centre.n_candidates), neighbours=near, centred=table.mean is not None)


def centre_png(view: CentreView, method: str = "pca") -> bytes:
    """The centre plot of ``view`` as PNG bytes: every vector it holds projected together to 2-D by ``method``."""
    from unibind.retrieval.plots import figures
    from unibind.retrieval.plots.projection import project

    projection = project(view.points(), method)
    spec = view.spec
    title = (f"{view.category}: its centre ({spec.strategy}, K={spec.k}: {len(view.members)} members of "
             f"{view.candidates} descriptions) and the {len(view.neighbours)} nearest centres\n"
             f"2-D {projection.method.upper()} of these {len(projection.coords)} vectors; nearest: cosine of the "
             f"centre means" + ("; in the space centred on the knowledge base" if view.centred else ""))
    labels = tuple(f"PC{i + 1} ({share:.0%} of the variance)" for i, share in enumerate(projection.explained))
    return figures.centre_png(projection.coords, category=view.category, prompt=view.prompt,
                              members=len(view.members), others=len(view.others),
                              neighbours=[(n.category, n.cosine, len(n.vectors)) for n in view.neighbours],
                              title=title, axis_labels=(labels[0], labels[1]))
