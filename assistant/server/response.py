"""What `assistant serve` answers with: a completion, the chunks of a streamed one, and errors in OpenAI's shape.

Every failure reaches the client as ``{"error": {...}}`` JSON (``ApiError``), never with a path or a
traceback: the details go to the server's log (``log``, on stderr).
"""

from __future__ import annotations

import asyncio
import math
import secrets
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from assistant import AssistantError
from assistant.chat.persona import PersonaError
from assistant.models.engine import ContextLengthError
from assistant.models.schema import SchemaError, check
from assistant.server.request import ApiError, ChatRequest
from assistant.server.stream import HEARTBEAT, Piece, drain, sse


def log(message: str) -> None:
    print(f"assistant serve: {message}", file=sys.stderr, flush=True)


@dataclass
class Outcome:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int  # prompt tokens the engine's KV cache already held
    session_ttft_s: float  # Session.send -> first piece, as an in-process caller would see it
    tokens_per_s: float  # the engine's own decode rate
    logprobs: list[dict[str, Any]] | None = None  # one entry per token, when the request asked
    sources: list[dict[str, Any]] = field(default_factory=list)  # a persona's documents the answer drew on

    def note(self) -> dict[str, Any]:
        """The answer's sources as an extra top-level field (``sources``: path, start_line, end_line, score), which
        OpenAI's clients keep (``model_extra``) and ignore; nothing when there are none."""
        return {"sources": self.sources} if self.sources else {}

    def usage(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        }

    def timings(self) -> dict[str, float]:
        """Server-side figures (llama.cpp's server sends a ``timings`` object too): what HTTP adds is the rest."""
        return {
            "session_ttft_ms": round(self.session_ttft_s * 1000, 3),
            "prompt_n": self.prompt_tokens - self.cached_tokens,
            "predicted_n": self.completion_tokens,
            "predicted_per_second": round(self.tokens_per_s, 3),
        }


def token_logprob(text: str, logprob: float) -> dict[str, Any]:
    """One token's entry in OpenAI's ``logprobs.content``: its text (what it added to the answer), logprob and bytes.

    A token that ends inside a multi-byte character adds no text (the next one adds the character). With
    ``stop``, text held back while it might begin a stop string comes with the token that releases it (or,
    at the end of the answer, with none), so the tokens of a stop string and those held have no entry."""
    value = logprob if math.isfinite(logprob) else -9999.0  # OpenAI's value for "never"
    return {"token": text, "logprob": value, "bytes": list(text.encode()), "top_logprobs": []}


WARNING_HEADER = "X-Assistant-Warning"


def warning_headers(warnings: list[str]) -> dict[str, str]:
    """The response's notes (a stale persona's) as a header too, for clients that never read the body's extra
    fields: one line, ASCII (a header carries no other)."""
    if not warnings:
        return {}
    text = " | ".join(w.replace("\r", " ").replace("\n", " ") for w in warnings)
    return {WARNING_HEADER: text.encode("ascii", "replace").decode("ascii")}


def completion(model: str, outcome: Outcome, warnings: list[str] | None = None) -> dict[str, Any]:
    """The body of a whole (not streamed) answer; ``warnings`` (a field OpenAI's clients keep as an extra) only when
    there are some."""
    return {
        "id": "chatcmpl-" + secrets.token_hex(12),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": outcome.text},
                "logprobs": None if outcome.logprobs is None else {"content": outcome.logprobs, "refusal": None},
                "finish_reason": outcome.finish_reason,
            }
        ],
        "usage": outcome.usage(),
        "timings": outcome.timings(),
        **outcome.note(),
        **({"warnings": warnings} if warnings else {}),
    }


async def chunks(
    request: ChatRequest,
    task: asyncio.Future[Outcome],
    pieces: asyncio.Queue[Piece | None],
    warnings: list[str] | None = None,
) -> AsyncIterator[bytes]:
    """A streamed answer's events: its ``pieces`` as they come, then, once ``task`` is done, the end or the error.
    The first event carries the ``warnings``, if any.

    While nothing comes (waiting in the queue, a long prompt) a comment line every ``HEARTBEAT`` seconds
    keeps writing, which is how a client that closed its socket is noticed (``stream``)."""
    base = {
        "id": "chatcmpl-" + secrets.token_hex(12),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": request.model,
    }

    def chunk(delta: dict[str, str], finish: str | None = None, logprobs: Any = None, **extra: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        return sse({**base, "choices": [choice], **extra})

    def content(piece: Piece) -> bytes:
        text, entry = piece
        logprobs = {"content": [entry] if entry else [], "refusal": None} if request.logprobs else None
        return chunk({"content": text}, logprobs=logprobs)

    first: dict[str, Any] = {"warnings": warnings} if warnings else {}
    yield chunk({"role": "assistant", "content": ""}, **first)
    while True:
        try:
            batch = await asyncio.wait_for(drain(pieces), HEARTBEAT)
        except asyncio.TimeoutError:
            yield b": waiting\n\n"
            continue
        if batch is None:
            break
        yield b"".join(content(piece) for piece in batch)  # one write for the pieces that piled up
    if task.cancelled():
        return
    if isinstance(error := task.exception(), ApiError):
        yield sse(error.body())
        return
    if error is not None:
        yield sse(internal(error).body())
        return
    outcome = task.result()
    yield chunk({}, outcome.finish_reason, timings=outcome.timings(), **outcome.note())
    if request.include_usage:
        yield sse({**base, "choices": [], "usage": outcome.usage()})
    yield sse("[DONE]")


def conforms(answer: str, schema: dict[str, Any]) -> None:
    """The whole answer to a ``response_format`` request, checked as ``assistant ask --schema`` checks it."""
    try:
        check(answer, schema)
    except SchemaError as exc:
        log(f"response_format: {exc}")
        raise ApiError(
            500,
            f"{exc}; the answer was stored",
            "server_error",
            param="response_format",
            code="response_format_mismatch",
        ) from None


def generation_error(exc: AssistantError) -> ApiError:
    message = str(exc)
    if isinstance(exc, PersonaError):
        return ApiError(400, message, param="model", code="context_length_exceeded")
    if isinstance(exc, ContextLengthError):  # the latest message alone does not fit: it is never cut
        return ApiError(400, message, param="messages", code="context_length_exceeded")
    log(f"generation failed: {message}")
    return ApiError(500, "generation failed; see the server's log", "server_error")


def internal(exc: BaseException) -> ApiError:
    log(f"internal error: {type(exc).__name__}: {exc}")
    return ApiError(500, "internal server error; see the server's log", "server_error")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error = ApiError(exc.status_code, str(exc.detail), code="not_found" if exc.status_code == 404 else None)
    return JSONResponse(error.body(), status_code=exc.status_code, headers=exc.headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    error = internal(exc)
    return JSONResponse(error.body(), status_code=500)


ERROR_HANDLERS = {ApiError: _api_error, HTTPException: _http_error, Exception: _internal_error}
