"""``GET /v1/categories/{name}/centre``: a category's centre members with rank and score, for one centre spec
(strategy, K, base-prompt template)."""

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
from unibind.schema.errors import InvalidInput, NotFound

TEMPLATE = r"^[^{}]*\{\}[^{}]*$"  # one {} for the category name, no other braces


def _check_template(template: str) -> str:
    if not re.search(TEMPLATE, template):
        raise InvalidInput(f"prompt template {template!r} must contain exactly one '{{}}' for the category name "
                           f"and no other braces")
    return template


def router() -> APIRouter:
    """The centre route."""
    api = APIRouter(tags=["knowledge base"])

    @api.get("/v1/categories/{name}/centre", response_model=p.CentreView, responses=responses(400, 404, 409, 422))
    async def centre(name: str, st: State,
                     strategy: str = Query("informative", description="how the centre was built",
                                           json_schema_extra={"enum": list(STRATEGIES)}),
                     k: int = Query(DEFAULT_K, ge=1, description="K: the centre's size"),
                     template: str = Query(BASE_PROMPT, description="the base-prompt template ({}: the category)",
                                           json_schema_extra={"pattern": TEMPLATE, "maxLength": MAX_TEMPLATE_CHARS})
                     ) -> p.CentreView:
        spec = CentreSpec(template=_check_template(template), k=k, strategy=strategy)  # a bad strategy: a 400

        def work() -> p.CentreView:
            space = st.snapshot().space()
            found, members = centre_members(st.db, space, spec, name)
            if found is None:
                raise NotFound(f"no centre yet for {name!r} with {spec.strategy}, K={spec.k}, {spec.template!r}: "
                               f"run `unibind centres build`")
            return p.CentreView(category=name, strategy=spec.strategy, k=spec.k, template=spec.template,
                                candidates=found.n_candidates, members=[p.CentreMember(**m) for m in members])

        return await run_in_threadpool(work)

    return api
