"""The built-in dashboard: the page and the plotly bundle of the installed package (never a CDN)."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from cryptoviz.api.errors import ApiError

STATIC_DIR = Path(__file__).parent.parent / "static"

router = APIRouter(include_in_schema=False)


def plotly_js() -> Path:
    """The plotly.min.js bundled with the installed plotly package (served locally, never from a CDN)."""
    return Path(str(importlib.resources.files("plotly") / "package_data" / "plotly.min.js"))


@router.get("/")
def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/static/plotly.min.js")
def plotly() -> FileResponse:
    path = plotly_js()
    if not path.is_file():
        raise ApiError(404, "not found", f"plotly.min.js is missing from the plotly package ({path})")
    return FileResponse(path, media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"})
