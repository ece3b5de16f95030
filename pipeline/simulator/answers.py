"""How the simulator answers: JSON bodies and Sinch's error envelope (reference §2)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from pipeline.sinch.models import error_body


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def sinch_error(
    status: int,
    grpc_status: str,
    message: str,
    *,
    details: Sequence[dict[str, str]] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = error_body(status, grpc_status, message, details)
    return JSONResponse(body, status, headers=headers or None)


def invalid_argument(message: str) -> JSONResponse:
    return sinch_error(400, "INVALID_ARGUMENT", message)


async def json_object(request: Request) -> tuple[dict[str, Any], str]:
    """The request's JSON object body, or {} and what is wrong with it."""
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return {}, "Request body is not valid JSON"
    if not isinstance(body, dict):
        return {}, "Request body must be a JSON object"
    return body, ""
