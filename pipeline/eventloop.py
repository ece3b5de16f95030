"""The event loop `submit` and `collect` run in: uvloop where it is installed.

uvloop (libuv; already installed for the receiver's uvicorn, `uvicorn[standard]`) runs the
dispatcher's event loop for less CPU a query than asyncio's own loop, and the bench's bare
aiohttp reference is measured on the cheaper of the two. Without uvloop (a platform it has no
wheel for) asyncio's loop does the same work.

    result = eventloop.run(main())
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard] on Linux
        return asyncio.run(main)
    return uvloop.run(main)
