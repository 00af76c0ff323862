"""``/api/stream``: the live market as Server-Sent Events (the producer is :mod:`cryptoviz.api.live`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from cryptoviz.api.deps import EngineDep, ShutdownDep
from cryptoviz.api.errors import ERRORS
from cryptoviz.api.live import QUEUE_FRAMES, SNAPSHOT_EVERY, STREAM_ROWS, LiveHub
from cryptoviz.api.stream import per_client_events

PER_CLIENT = "per-client"  # app.state.stream_mode: each connection polls on its own (for comparisons)


def _description(poll_interval: float) -> str:
    return f"""\
One shared reader polls the database every {poll_interval:g}s (at once after each write when the writer
runs in this process) and sends every client the same frames. Each event's `data` is one JSON object.

* `event: snapshot`: the top {STREAM_ROWS} coins by market cap: `seq` (the number of the last change it
  includes), `observed_at` (the newest observation of any coin), `total` (coins with a current value),
  `coins` (rows as in `/api/coins`, largest market cap first; `age_s` and `stale` as of the read that
  made the frame, so a row's age grows by the time since: a snapshot every {SNAPSHOT_EVERY:g}s brings fresh
  ones). Sent on connect, to everyone every
  {SNAPSHOT_EVERY:g}s, after the database failed, and to a client that fell behind.
* `event: delta`: what changed since the previous event: `seq` (one more than the previous `delta` or
  `snapshot`), `observed_at`, `coins` (only the changed rows, whole), `removed` (ids that left the top
  {STREAM_ROWS}). Apply it to the last snapshot; a gap in `seq` means events were missed: reconnect.
* `event: error`: `{{"error": "database unavailable"}}` while the database fails (a snapshot follows once it
  answers again).
* `: keepalive` comments after {poll_interval:g}s without an event; `id:` is the `seq`.

A client that reads too slowly (more than {QUEUE_FRAMES} events waiting) has what waits replaced by one
current snapshot: it is never disconnected for being slow. With a token set, pass it as `?token=`
(EventSource cannot send headers) or as a bearer header."""


def make_router(poll_interval: float) -> APIRouter:
    """The stream's router; ``poll_interval``: seconds between database reads (it is in the docs)."""
    router = APIRouter(tags=["live"])

    @router.get("/api/stream", response_class=StreamingResponse, summary="Live market (Server-Sent Events)",
                description=_description(poll_interval),
                responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                                 "description": "An endless event stream."}, 401: ERRORS[401]})
    async def stream(request: Request, engine: EngineDep, shutdown: ShutdownDep) -> StreamingResponse:
        if getattr(request.app.state, "stream_mode", None) == PER_CLIENT:
            events = per_client_events(engine, poll_interval=poll_interval, stop=shutdown,
                                       max_staleness=request.app.state.settings.max_staleness)
        else:
            hub: LiveHub = request.app.state.live
            events = hub.events()
        return StreamingResponse(events, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return router
