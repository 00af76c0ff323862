"""``/api/stream``: live snapshots as Server-Sent Events (the event loop is :mod:`cryptoviz.api.stream`)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from cryptoviz.api import queries
from cryptoviz.api.deps import EngineDep, ShutdownDep
from cryptoviz.api.errors import ERRORS
from cryptoviz.api.schemas import CoinRow, StreamSnapshot
from cryptoviz.api.stream import snapshot_events

STREAM_ROWS = 100


def make_router(poll_interval: float) -> APIRouter:
    """The stream's router; ``poll_interval``: seconds between database polls (it is in the docs)."""
    router = APIRouter(tags=["live"])

    @router.get("/api/stream", response_class=StreamingResponse, summary="Live snapshots (Server-Sent Events)",
                description=f"`event: snapshot` with the top {STREAM_ROWS} coins by market cap (JSON: observed_at, "
                            f"total, coins) at once and whenever a newer observation is stored; a `: keepalive` "
                            f"comment on every other poll ({poll_interval:g}s). With a token set, pass it as "
                            "`?token=` (EventSource cannot send headers) or as a bearer header.",
                responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                                 "description": "An endless event stream."}, 401: ERRORS[401]})
    async def stream(engine: EngineDep, shutdown: ShutdownDep) -> StreamingResponse:
        def encode_snapshot(observed_at: datetime | None) -> str:
            total, rows = queries.list_coins(engine, sort="market_cap", order="desc", limit=STREAM_ROWS)
            return StreamSnapshot(observed_at=observed_at, total=total,
                                  coins=[CoinRow.model_validate(r) for r in rows]).model_dump_json()

        events = snapshot_events(engine, encode_snapshot, poll_interval=poll_interval, stop=shutdown)
        return StreamingResponse(events, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return router
