"""What routes ask FastAPI for: the loaded :class:`ServiceState` of the running app."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from unibind.retrieval.service.state import ServiceState, service_of


def served_state(request: Request) -> ServiceState:
    """The state the app's lifespan loaded."""
    return service_of(request)


State = Annotated[ServiceState, Depends(served_state)]
