"""Server-sent events for `assistant serve`: the streaming response, and noticing a client that goes away.

A streamed answer's pieces arrive on an ``asyncio.Queue`` from the worker thread; ``drain`` takes
what piled up so that one write carries them. ``EventStream`` calls ``on_disconnect`` the moment
the client's connection closes (not at the next write), so its generation stops at the next token.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send


async def disconnected(receive: Receive) -> None:
    """Return when the client goes away (the request body must have been read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def sse(data: dict[str, Any] | str) -> bytes:
    """One event: a JSON object, or a bare string such as ``[DONE]``."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {text}\n\n".encode()


async def drain(pieces: asyncio.Queue[str | None]) -> list[str] | None:
    """The next piece and any others already queued; None once the end marker (None) is reached."""
    texts = [await pieces.get()]
    while texts[-1] is not None and not pieces.empty():
        texts.append(pieces.get_nowait())
    if texts[-1] is None:
        texts.pop()
        if not texts:
            return None
        pieces.put_nowait(None)  # the end comes on the next call
    return texts  # type: ignore[return-value]


class EventStream(StreamingResponse):
    """Server-sent events; a client that goes away calls ``on_disconnect`` at once, not at the next write."""

    def __init__(self, events: AsyncIterator[bytes], on_disconnect: Callable[[], None]) -> None:
        super().__init__(
            events, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        self.on_disconnect = on_disconnect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = asyncio.ensure_future(disconnected(receive))
        watcher.add_done_callback(lambda task: None if task.cancelled() else self.on_disconnect())
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async for chunk in self.body_iterator:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the client went away while we wrote
            self.on_disconnect()
        finally:
            watcher.cancel()
            await self.body_iterator.aclose()  # type: ignore[attr-defined]
