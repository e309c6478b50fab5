"""``GET /v1/categories/{name}/centre``: a category's centre members with rank and score, for one centre spec
(strategy, K = ``centre_size``, base-prompt template). ``k`` is the old name of ``centre_size``, kept (deprecated)
for now: elsewhere in the API ``k`` is the number of answers."""

from __future__ import annotations

import re

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from unibind.retrieval.centres.builder import DEFAULT_K, MAX_TEMPLATE_CHARS, CentreSpec, centre_members
from unibind.retrieval.centres.prompts import BASE_PROMPT
from unibind.retrieval.centres.strategies import STRATEGIES
from unibind.retrieval.service import payloads as p
from unibind.retrieval.service.dependencies import State
from unibind.retrieval.service.errors import responses
from unibind.schema.errors import InvalidInput

TEMPLATE = r"^[^{}]*\{\}[^{}]*$"  # one {} for the category name, no other braces


def _check_template(template: str) -> str:
    if not re.search(TEMPLATE, template):
        raise InvalidInput(f"prompt template {template!r} must contain exactly one '{{}}' for the category name "
                           f"and no other braces")
    return template


def _centre_size(centre_size: int | None, k: int | None) -> int:
    """K from ``centre_size``, or from its old name ``k``; both given and different is a 400."""
    if centre_size is not None and k is not None and centre_size != k:
        raise InvalidInput(f"centre_size={centre_size} and k={k} disagree: k is the deprecated name of centre_size; "
                           f"send centre_size only")
    return next((v for v in (centre_size, k) if v is not None), DEFAULT_K)


def router() -> APIRouter:
    """The centre route."""
    api = APIRouter(tags=["knowledge base"])

    @api.get("/v1/categories/{name}/centre", response_model=p.CentreView, responses=responses(400, 404, 409, 422))
    async def centre(name: str, st: State,
                     strategy: str = Query("informative", description="how the centre was built",
                                           json_schema_extra={"enum": list(STRATEGIES)}),
                     centre_size: int | None = Query(None, ge=1, description=f"K: the centre's size (default "
                                                                             f"{DEFAULT_K})"),
                     k: int | None = Query(None, ge=1, deprecated=True,
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

    return api
