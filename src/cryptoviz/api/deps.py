"""What the routes depend on: the application's engine and shutdown event, and the bearer token.

``create_app`` keeps the engine, the settings and the shutdown event in ``app.state``; routes take them
as typed dependencies (``engine: EngineDep``). The token dependencies are attached by ``create_app`` to
the protected routers only when ``CRYPTOVIZ_API_TOKEN`` is set, so an open API documents no security.
"""

from __future__ import annotations

import hmac
import threading
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cryptoviz.api.errors import ApiError
from cryptoviz.config import Settings


def get_engine(request: Request) -> sa.Engine:
    engine: sa.Engine = request.app.state.engine
    return engine


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_shutdown(request: Request) -> threading.Event:
    """Set by the server when it stops: open streams end."""
    event: threading.Event = request.app.state.shutdown
    return event


EngineDep = Annotated[sa.Engine, Depends(get_engine)]
ShutdownDep = Annotated[threading.Event, Depends(get_shutdown)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def api_token(settings: Settings) -> str | None:
    """The token the API asks for, or None when it is open (unset or empty)."""
    secret = getattr(settings, "api_token", None)
    if secret is None:
        return None
    value = secret.get_secret_value() if hasattr(secret, "get_secret_value") else str(secret)
    return value or None


_BEARER = HTTPBearer(auto_error=False, description="The value of CRYPTOVIZ_API_TOKEN.")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]


def _check(request: Request, given: str | None) -> None:
    token = api_token(request.app.state.settings)
    if token is None:
        return
    if given is None or not hmac.compare_digest(given.encode(), token.encode()):
        raise ApiError(401, "unauthorized", "missing or wrong bearer token: send 'Authorization: Bearer <token>'",
                       headers={"WWW-Authenticate": "Bearer"})


def require_token(request: Request, credentials: Credentials) -> None:
    """``Authorization: Bearer <token>``."""
    _check(request, credentials.credentials if credentials is not None else None)


def require_token_or_query(request: Request, credentials: Credentials) -> None:
    """The bearer header, else ``?token=`` (a browser's EventSource cannot send headers)."""
    given = credentials.credentials if credentials is not None else request.query_params.get("token")
    _check(request, given)
