"""The console's HTML plumbing: templates, static assets, response headers, form bodies.

Everything the browser loads comes from this package (no CDN): the templates render on the
server, the stylesheet and the one small script are served from ``/console/static/``. The
Content-Security-Policy allows nothing else, and no inline script or style, so text from a
recording can never run in an auditor's browser even if escaping failed somewhere.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from pgwarden.console.timeline import cell
from pgwarden.recording.display import visible

__all__ = [
    "SECURITY_HEADERS",
    "StaticAsset",
    "asset",
    "html",
    "read_form",
    "templates",
]

MAX_FORM_BYTES = 64 * 1024

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    # pages show statements, results and identities: never kept by a shared cache or the
    # browser's back-forward cache after signing out
    "Cache-Control": "no-store",
}


# --------------------------------------------------------------------------------------------
# static assets


@dataclass(frozen=True, slots=True)
class StaticAsset:
    body: bytes
    media_type: str
    version: str  # content hash: URLs change when the file does, so they may be cached long


_MEDIA_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}


def _load_assets() -> dict[str, StaticAsset]:
    out: dict[str, StaticAsset] = {}
    folder = resources.files("pgwarden.console") / "static"
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if not entry.is_file() or suffix not in _MEDIA_TYPES:
            continue
        body = entry.read_bytes()
        out[entry.name] = StaticAsset(
            body, _MEDIA_TYPES[suffix], hashlib.sha256(body).hexdigest()[:12]
        )
    return out


ASSETS = _load_assets()


def asset(name: str) -> Response:
    found = ASSETS.get(name)
    if found is None:
        raise HTTPException(404, "no such file")
    return Response(
        found.body,
        media_type=found.media_type,
        headers={
            "Cache-Control": "public, max-age=86400",
            "X-Content-Type-Options": "nosniff",
        },
    )


# --------------------------------------------------------------------------------------------
# templates


def _utc(t: float | None) -> str:
    if t is None or not math.isfinite(t):
        return "—"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _clock(ts: str) -> str:
    """``12:34:56.789`` from a recording's ISO timestamp."""
    return ts[11:23] if len(ts) >= 23 else ts


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _static_url(base: str, name: str) -> str:
    found = ASSETS.get(name)
    version = found.version if found is not None else "0"
    return f"{base}/static/{name}?v={version}"


templates = Environment(
    loader=PackageLoader("pgwarden.console", "templates"),
    autoescape=select_autoescape(["html"], default_for_string=True, default=True),
    undefined=StrictUndefined,  # a typo in a template is an error in the tests, not a blank
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters.update(
    {"utc": _utc, "clock": _clock, "duration": _duration, "cell": cell, "visible": visible}
)


def html(
    request: Request, name: str, context: Mapping[str, Any], *, status: int = 200
) -> HTMLResponse:
    """Render ``templates/<name>`` with ``context`` (plus ``base`` and ``static``)."""
    base = "/console"
    page = templates.get_template(name).render(
        {
            "base": base,
            "static": lambda n: _static_url(base, n),
            **context,
        }
    )
    return HTMLResponse(page, status_code=status, headers=SECURITY_HEADERS)


# --------------------------------------------------------------------------------------------
# form bodies


async def read_form(request: Request) -> dict[str, str]:
    """A small ``application/x-www-form-urlencoded`` body as a dict (first value of each
    field). The console's forms are this simple, so no multipart parser is needed."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise HTTPException(415, "expected a form (application/x-www-form-urlencoded)")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise HTTPException(413, "the form is too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(400, "the form is not UTF-8") from None
    try:
        fields = parse_qs(text, keep_blank_values=True, max_num_fields=32)
    except ValueError:
        raise HTTPException(400, "the form has too many fields") from None
    return {key: values[0] for key, values in fields.items() if values}
