"""Server-sent events for `assistant serve`: the streaming response, and noticing a client that goes away.

A streamed answer's pieces arrive on an ``asyncio.Queue`` from the worker thread; ``drain`` takes
what piled up so that one write carries them. ``EventStream`` calls ``on_disconnect`` the moment
the connection is lost, so its generation stops at the next token.

A client may half-close its socket once its request is sent (``shutdown(SHUT_WR)``) and still read
the answer; TCP cannot tell that apart from a client that closed its socket until the server writes
(a closed socket answers with a reset). So the end of a client's input is not a disconnect
(``HalfCloseProtocol``): the connection is lost when a write fails, which for a stream is the next
token or heartbeat. A whole (not streamed) answer writes nothing until it is done, so a client that
closes its socket meanwhile is only noticed if its system resets the connection.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

HEARTBEAT = 1.0  # seconds between comment lines while a stream has nothing to send
Piece = tuple[str, dict[str, Any] | None]  # a piece of a streamed answer, and its token's logprob entry if asked


class HalfCloseProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, but the end of the client's input is not taken for the client leaving."""

    def eof_received(self) -> bool | None:  # type: ignore[override]  # asyncio.Protocol allows a bool
        """Keep the connection open to answer a request received in full; then close it (nothing more can come)."""
        cycle = self.cycle
        if cycle is None or cycle.response_complete or cycle.more_body:
            return None  # idle, or the request was cut short: close, as uvicorn does
        cycle.keep_alive = False
        return True


async def disconnected(receive: Receive) -> None:
    """Return when the client goes away (the request body must have been read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def sse(data: dict[str, Any] | str) -> bytes:
    """One event: a JSON object, or a bare string such as ``[DONE]``."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {text}\n\n".encode()


async def drain(pieces: asyncio.Queue[Piece | None]) -> list[Piece] | None:
    """The next piece and any others already queued; None once the end marker (None) is reached."""
    items = [await pieces.get()]
    while items[-1] is not None and not pieces.empty():
        items.append(pieces.get_nowait())
    if items[-1] is None:
        items.pop()
        if not items:
            return None
        pieces.put_nowait(None)  # the end comes on the next call
    return items  # type: ignore[return-value]


class EventStream(StreamingResponse):
    """Server-sent events; a lost connection calls ``on_disconnect`` at once, not at the next write."""

    def __init__(
        self, events: AsyncIterator[bytes], on_disconnect: Callable[[], None], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(
            events,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(headers or {})},
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
