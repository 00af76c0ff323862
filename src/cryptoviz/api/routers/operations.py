"""``/healthz`` (always open) and ``/metrics`` (behind the token when one is set): two routers."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from cryptoviz import metrics
from cryptoviz.api import queries
from cryptoviz.api.deps import EngineDep
from cryptoviz.api.errors import ERRORS
from cryptoviz.api.schemas import HealthOut

logger = logging.getLogger(__name__)

router = APIRouter(tags=["operations"])
metrics_router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=HealthOut, summary="Liveness and database check",
            responses={503: {"model": HealthOut, "description": "The database does not answer."}})
def healthz(engine: EngineDep) -> Any:
    try:
        queries.ping(engine)
    except sa.exc.SQLAlchemyError as exc:
        logger.warning("healthz: database error %s", type(exc).__name__)
        return JSONResponse({"status": "error", "database": "unavailable"}, status_code=503)
    return HealthOut(status="ok", database="ok")


@metrics_router.get("/metrics", response_class=Response, summary="Prometheus metrics",
                    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                                     "description": "Prometheus text format."}, 401: ERRORS[401]})
def prometheus_metrics(engine: EngineDep) -> Response:
    try:
        state = queries.database_state(engine)
    except sa.exc.SQLAlchemyError as exc:
        logger.warning("metrics: database error %s", type(exc).__name__)
        metrics.set_database_state(up=False)
    else:
        metrics.set_database_state(up=True, rows=state.rows, last_observation=state.last_observation,
                                   last_run=state.last_run, sources_up=state.sources_up,
                                   dlq_messages=state.dlq_messages)
    return Response(metrics.render(), media_type=metrics.CONTENT_TYPE_LATEST)
