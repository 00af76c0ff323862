"""Errors as JSON: ``{"error": ..., "detail": ...}``, plus ``parameter`` for a bad parameter.

:func:`register_error_handlers` answers every error of the application this way: an :class:`ApiError`
raised by a route or a dependency, an invalid parameter, an unknown route, a failing database (503).
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered as ``{"error": ..., "detail": ...}`` (plus ``parameter`` for a bad parameter)."""

    def __init__(self, status: int, error: str, detail: str, *, parameter: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail
        self.parameter, self.headers = parameter, headers


def bad_parameter(parameter: str, detail: str) -> ApiError:
    return ApiError(422, "invalid parameter", detail, parameter=parameter)


class ErrorOut(BaseModel):
    error: str = Field(description="Short error kind, e.g. 'not found', 'invalid parameter', 'unauthorized'.")
    detail: str = Field(description="What went wrong, in words.")


class ParameterErrorOut(ErrorOut):
    parameter: str = Field(description="The query or path parameter that was rejected.")


# The documented error answers of the API routes (OpenAPI ``responses``).
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "Missing or wrong bearer token (when CRYPTOVIZ_API_TOKEN is set)."},
    422: {"model": ParameterErrorOut, "description": "A parameter is invalid; `parameter` names it."},
    503: {"model": ErrorOut, "description": "The database does not answer."},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "Unknown coin."}}


def error_body(exc: ApiError) -> dict[str, Any]:
    body: dict[str, Any] = {"error": exc.error}
    if exc.parameter is not None:
        body["parameter"] = exc.parameter
    body["detail"] = exc.detail
    return body


async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse(error_body(exc), status_code=exc.status, headers=exc.headers)


async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    first = errors[0] if errors else {}
    loc = [str(part) for part in first.get("loc", ()) if part not in ("query", "path", "header", "body")]
    parameter = loc[0] if loc else "?"
    detail = str(first.get("msg", "invalid value"))
    if "input" in first and isinstance(first["input"], str | int | float):
        detail += f" (got {str(first['input'])[:100]!r})"
    return JSONResponse(error_body(bad_parameter(parameter, detail)), status_code=422)


async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    error = {404: "not found", 405: "method not allowed"}.get(exc.status_code, "error")
    return JSONResponse({"error": error, "detail": str(exc.detail)}, status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


async def _database_error(_request: Request, exc: sa.exc.SQLAlchemyError) -> JSONResponse:
    logger.warning("API: database error %s: %s", type(exc).__name__, str(exc).splitlines()[0][:300])
    return JSONResponse({"error": "database unavailable",
                         "detail": f"the database query failed ({type(exc).__name__})"}, status_code=503)


def register_error_handlers(app: FastAPI) -> None:
    app.exception_handler(ApiError)(_api_error)
    app.exception_handler(RequestValidationError)(_invalid)
    app.exception_handler(StarletteHTTPException)(_http_error)
    app.exception_handler(sa.exc.SQLAlchemyError)(_database_error)
