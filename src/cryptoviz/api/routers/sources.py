"""``/api/sources``: the health of each source over the last recorded cycles."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from cryptoviz.api.deps import EngineDep
from cryptoviz.api.errors import ERRORS
from cryptoviz.api.schemas import SourcesOut
from cryptoviz.store.queries import source_health

router = APIRouter(tags=["sources"])


@router.get("/api/sources", response_model=SourcesOut, responses=ERRORS,
            summary="Health of each source over the last cycles",
            description="From `pipeline_runs`: last success, last error, failures in a row, circuit breaker, "
                        "fetched / rejected / used in the last cycle.")
def sources_health(
    engine: EngineDep,
    runs: Annotated[int, Query(ge=1, le=1000, description="Recorded cycles to consider.")] = 20,
) -> SourcesOut:
    return SourcesOut.model_validate(source_health(engine, runs), from_attributes=True)
