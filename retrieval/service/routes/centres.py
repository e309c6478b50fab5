"""``GET /v1/categories/{name}/centre``: a category's centre members with rank and score, for one centre spec
(strategy, K = ``centre_size``, base-prompt template). ``k`` is the old name of ``centre_size``, kept (deprecated)
for now: elsewhere in the API ``k`` is the number of answers.

``GET /v1/categories/{name}/centre/plot.png``: the same centre as a picture (``unibind plot centre``): its members,
the category's other descriptions, its base prompt and the ``neighbours`` nearest centres, in 2-D (PCA). The
served spec's centres come from the loaded recognizer; another spec's must be built (409 until then, as for the
members route)."""

from __future__ import annotations

import re

from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

from unibind.retrieval.centres.builder import (DEFAULT_K, MAX_CENTRE_SIZE, MAX_TEMPLATE_CHARS, CentreSpec,
                                                 centre_members)
from unibind.retrieval.centres.prompts import BASE_PROMPT
from unibind.retrieval.centres.strategies import DEFAULT_STRATEGY, STRATEGIES
from unibind.retrieval.plots.neighbours import DEFAULT_NEIGHBOURS, MAX_NEIGHBOURS
from unibind.retrieval.service import payloads as p
from unibind.retrieval.service.dependencies import State
from unibind.retrieval.service.errors import responses
from unibind.schema.errors import InvalidInput

TEMPLATE = r"^[^{}\x00]*\{\}[^{}\x00]*$"  # one {} for the category name, no other braces, no NUL (no store keeps it)


def _check_template(template: str) -> str:
    if not re.search(TEMPLATE, template):
        raise InvalidInput(f"prompt template {template!r} must contain exactly one '{{}}' for the category name "
                           f"and no other braces or NUL characters")
    return template


def _centre_size(centre_size: int | None, k: int | None) -> int:
    """K from ``centre_size``, or from its old name ``k``; both given and different is a 400."""
    if centre_size is not None and k is not None and centre_size != k:
        raise InvalidInput(f"centre_size={centre_size} and k={k} disagree: k is the deprecated name of centre_size; "
                           f"send centre_size only")
    return next((v for v in (centre_size, k) if v is not None), DEFAULT_K)


def router() -> APIRouter:
    """The centre routes: the members, and their picture."""
    api = APIRouter(tags=["knowledge base"])

    @api.get("/v1/categories/{name}/centre", response_model=p.CentreView, responses=responses(400, 404, 409, 422))
    async def centre(name: str, st: State,
                     strategy: str = Query(DEFAULT_STRATEGY, description="how the centre was built",
                                           json_schema_extra={"enum": list(STRATEGIES)}),
                     centre_size: int | None = Query(None, ge=1, le=MAX_CENTRE_SIZE,
                                                     description=f"K: the centre's size (default {DEFAULT_K})"),
                     k: int | None = Query(None, ge=1, le=MAX_CENTRE_SIZE, deprecated=True,
                                           description="the old name of centre_size (deprecated: elsewhere k is the "
                                                       "number of answers)"),
                     template: str = Query(BASE_PROMPT, description="the base-prompt template ({}: the category)",
                                           json_schema_extra={"pattern": TEMPLATE, "maxLength": MAX_TEMPLATE_CHARS})
                     ) -> p.CentreView:
        spec = CentreSpec(template=_check_template(template), k=_centre_size(centre_size, k),
                          strategy=strategy)  # a bad strategy: a 400

        def work() -> p.CentreView:
            space = st.snapshot().space()
            found, members = centre_members(st.db, space, spec, name)  # not built yet: CentreNotBuilt, a 409
            return p.CentreView(category=name, strategy=spec.strategy, centre_size=spec.k, k=spec.k,
                                template=spec.template, candidates=found.n_candidates,
                                members=[p.CentreMember(**m) for m in members])

        return await run_in_threadpool(work)

    @api.get("/v1/categories/{name}/centre/plot.png", response_class=Response,
             responses={200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
                              "description": "a PNG: the centre, the category's other descriptions, its base "
                                             "prompt and the nearest centres in 2-D (PCA)"},
                        **responses(400, 404, 409, 422)})
    async def centre_plot(name: str, st: State,
                          strategy: str = Query(DEFAULT_STRATEGY, description="how the centre was built",
                                                json_schema_extra={"enum": list(STRATEGIES)}),
                          centre_size: int = Query(DEFAULT_K, ge=1, le=MAX_CENTRE_SIZE,
                                                   description=f"K: the centre's size (default {DEFAULT_K})"),
                          neighbours: int = Query(DEFAULT_NEIGHBOURS, ge=0, le=MAX_NEIGHBOURS,
                                                  description="the nearest other centres to draw (nearest: cosine "
                                                              "of the centre means)")) -> Response:
        spec = CentreSpec(k=centre_size, strategy=strategy)  # a bad strategy: a 400

        def work() -> bytes:
            from unibind.retrieval.plots.centre_view import centre_png, gather

            with st.query() as snap:
                space = snap.space()
                # the served spec's centres are the recognizer's (built at start); others must be built already
                table = snap.recognizer().table if spec == CentreSpec() else None
                view = gather(st.db, space, spec, name, snap.encoder(),  # type: ignore[arg-type]
                              neighbours=neighbours, table=table)
            return centre_png(view)

        return Response(await run_in_threadpool(work), media_type="image/png",
                        headers={"Cache-Control": "no-cache"})

    return api
