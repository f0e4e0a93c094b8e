"""`assistant serve`: the on-device models behind an OpenAI-compatible API on localhost.

``GET /v1/models``, ``POST /v1/chat/completions`` (whole, or streamed as server-sent events) and
``GET /health`` on Starlette + uvicorn. Each request is a chat turn through a :class:`Session`:
the answer is stored in the history (marked "via API", under the model name the client asked
for) unless the server runs without history. A client that resends the growing message list
of one chat continues the same stored conversation, so the engine evaluates only what is new.

One request runs at a time, on one worker thread; at most ``queue`` more wait and later ones
get 429 with Retry-After. A client that goes away stops its generation at the next token; its
stored answer keeps ``finish_reason = "cancelled"``. Models load on first use, swap between
requests and unload after ``idle_unload_s`` seconds without a request.

Secure by default: loopback only unless an API key is set; the key is compared in constant time;
without a key, requests naming another Host or Origin (a web page, DNS rebinding) are refused;
bodies and max_tokens are bounded; every error is OpenAI-style JSON, without paths or tracebacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import math
import secrets
import socket
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from assistant import AssistantError
from assistant.api_request import ApiError, ChatRequest, grammar_for, parse_chat, parse_json
from assistant.config import Config, database_path
from assistant.engine import Engine
from assistant.registry import DEFAULT_MODEL, Registry
from assistant.session import Session
from assistant.store import Store

VIA = "API"


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8181  # 0: any free port
    api_key: str = ""  # required as "Authorization: Bearer KEY" when set
    model: str = ""  # loaded before the server listens; otherwise models load on first use
    idle_unload_s: float = 0.0  # unload the model after this long without a request (0: never)
    queue: int = 16  # requests that may wait while one runs; more get 429
    max_body_bytes: int = 1 << 20
    max_tokens: int = 4096
    history: bool = True  # store the exchanges in the history database


def log(message: str) -> None:
    print(f"assistant serve: {message}", file=sys.stderr, flush=True)


# -- models
@dataclass
class Target:
    """What a requested model name stands for: the registered model that runs and a persona's settings."""

    model: str
    system: str = ""
    temperature: float | None = None
    max_tokens: int | None = None


def _personas() -> Any:
    """The persona module when this install has it (None otherwise)."""
    import importlib
    import importlib.util

    return importlib.import_module("assistant.persona") if importlib.util.find_spec("assistant.persona") else None


class ModelHost:
    """Which model answers: loaded on first use, swapped between requests, unloaded when idle.

    A small stand-in for the model manager the UI and CLI are to share: it drives ``Engine`` and
    ``Registry`` directly. ``engine_for`` and ``unload`` run on the server's one worker thread.
    """

    def __init__(self, registry: Registry, config: Config) -> None:
        self.registry, self.config = registry, config
        self.engine: Engine | None = None
        self.model = ""  # the registered name of the loaded model
        self.last_used = time.monotonic()
        self.unloads = 0

    def names(self) -> list[str]:
        """Registered models, then personas: read on each call, so `assistant models`/`persona` changes show."""
        personas = _personas()
        return list(dict.fromkeys([*self.registry.names(), *(personas.names() if personas else [])]))

    def target(self, name: str) -> Target:
        """The model (and persona settings) behind a name; 404 for a name GET /v1/models does not list."""
        personas = _personas()
        if personas is not None and name in personas.names():
            try:
                persona = personas.load(name)
            except AssistantError as exc:
                log(f"persona {name}: {exc}")
                raise ApiError(503, f"persona {name!r} cannot be read; see the server's log", "server_error",
                               code="model_unavailable") from None
            model = persona.runtime_model() or self.config.model.default or DEFAULT_MODEL
            return Target(model, persona.runtime_system(), persona.temperature, persona.max_tokens)
        if name in self.registry.names():
            return Target(name)
        raise ApiError(404, f"the model {name!r} does not exist; GET /v1/models lists the models",
                       param="model", code="model_not_found")

    def engine_for(self, model: str) -> Engine:
        """The engine with ``model`` loaded: loaded now, or swapped in for the one loaded before."""
        try:
            path = self.registry.resolve(model)
            if self.engine is None:
                self.engine = Engine(path, n_ctx=self.config.model.n_ctx, threads=self.config.model.threads)
                log(f"loaded {model}")
            elif self.engine.path != path:
                self.engine.swap(path)
                log(f"swapped in {model}")
            self.model = model
        except AssistantError as exc:
            log(f"cannot load {model}: {exc}")
            raise ApiError(503, f"the model {model!r} cannot be loaded on this machine; see the server's log",
                           "server_error", code="model_unavailable") from None
        return self.engine

    @property
    def loaded(self) -> str | None:
        return self.model if self.engine is not None else None

    def unload(self) -> None:
        if self.engine is not None:
            name, engine, self.engine = self.model, self.engine, None
            engine.close()
            from assistant.engine import release_heap

            release_heap()
            self.unloads += 1
            log(f"unloaded {name}")


# -- conversations
class Conversations:
    """Which stored conversation a request continues: the one whose messages it resends, else a new one.

    Continuing the same conversation keeps the engine's KV cache for everything but the new
    question. The last ``keep`` conversations are remembered; without history (an in-memory
    store) forgotten ones are deleted, so memory stays bounded.
    """

    def __init__(self, store: Store, config: Config, history: bool, keep: int = 256) -> None:
        self.store, self.config, self.history, self.keep = store, config, history, keep
        self._open: OrderedDict[str, int] = OrderedDict()

    def session(self, request: ChatRequest, target: Target, engine: Engine) -> Session:
        conversation_id = self._open.pop(request.key(), None)
        system = "\n\n".join(part for part in (target.system, request.system) if part)
        config = replace(self.config, generation=replace(self.config.generation, system=system))
        session = Session(self.store, engine, config, conversation_id)
        session.via, session.model_label = VIA, request.model
        if conversation_id is None:
            self._start(session, request)
        return session

    def _start(self, session: Session, request: ChatRequest) -> None:
        """A new conversation holding the turns the client sent before its question."""
        first = next((text for role, text in request.earlier if role == "user"), request.question).strip()
        conversation_id = session.ensure_conversation(title=first.splitlines()[0] if first else "")
        route = json.dumps({"via": VIA})
        for role, text in request.earlier:
            model = request.model if role == "assistant" else ""
            self.store.add_message(conversation_id, role, text, model=model, route=route)

    def finished(self, request: ChatRequest, answer: str, conversation_id: int, engine: Engine, whole: bool) -> None:
        """Remember a whole answer's conversation under the messages that will continue it."""
        if whole:
            self._open[request.key(answer)] = conversation_id
        elif not self.history:
            self._drop(conversation_id, engine)
        while len(self._open) > self.keep:
            self._drop(self._open.popitem(last=False)[1], engine)

    def _drop(self, conversation_id: int, engine: Engine) -> None:
        engine.forget(conversation_id)
        if not self.history:
            self.store.delete_conversation(conversation_id)


# -- one request at a time
class Gate:
    """One engine job at a time, first come first served; at most ``limit`` more admitted to wait.

    Admission is counted when a request arrives (before any await), so a burst cannot overfill the
    queue; the turn is an ``asyncio.Lock`` (FIFO, cancellation-safe), released when the worker is done.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.admitted = 0  # requests admitted and not finished, running or waiting
        self.turn = asyncio.Lock()

    @property
    def busy(self) -> bool:
        return self.turn.locked()

    @property
    def waiting(self) -> int:
        return max(0, self.admitted - int(self.busy))

    def admit(self) -> bool:
        if self.admitted > self.limit:
            return False
        self.admitted += 1
        return True

    def leave(self) -> None:
        self.admitted -= 1


@dataclass(eq=False)
class Job:
    """One chat request on its way through the gate and the engine."""

    request: ChatRequest
    target: Target
    grammar: Any = None
    emit: Callable[[str], None] | None = None  # streaming: called on the worker thread with each piece
    cancelled: threading.Event = field(default_factory=threading.Event)
    session: Session | None = None
    tokens: int = 0  # pieces generated so far
    tokens_at_cancel: int = 0

    def cancel(self) -> None:
        """Stop at the next token (or never start); callable from any thread."""
        if not self.cancelled.is_set():
            self.tokens_at_cancel = self.tokens
            self.cancelled.set()
        if (session := self.session) is not None:
            session.cancel()


@dataclass
class Outcome:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int  # prompt tokens the engine's KV cache already held
    session_ttft_s: float  # Session.send -> first piece, as an in-process caller would see it
    tokens_per_s: float  # the engine's own decode rate

    def usage(self) -> dict[str, Any]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens,
                "prompt_tokens_details": {"cached_tokens": self.cached_tokens}}

    def timings(self) -> dict[str, float]:
        """Server-side figures (llama.cpp's server sends a ``timings`` object too): what HTTP adds is the rest."""
        return {"session_ttft_ms": round(self.session_ttft_s * 1000, 3), "prompt_n": self.prompt_tokens
                - self.cached_tokens, "predicted_n": self.completion_tokens,
                "predicted_per_second": round(self.tokens_per_s, 3)}


# -- HTTP
async def _disconnected(receive: Receive) -> None:
    """Return when the client goes away (the request body must have been read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class EventStream(StreamingResponse):
    """Server-sent events; a client that goes away calls ``on_disconnect`` at once, not at the next write."""

    def __init__(self, events: AsyncIterator[bytes], on_disconnect: Callable[[], None]) -> None:
        super().__init__(events, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.on_disconnect = on_disconnect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = asyncio.ensure_future(_disconnected(receive))
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


async def _drain(pieces: asyncio.Queue[str | None]) -> list[str] | None:
    """The next piece and any others already queued; None once the end marker is reached."""
    texts = [await pieces.get()]
    while texts[-1] is not None and not pieces.empty():
        texts.append(pieces.get_nowait())
    if texts[-1] is None:
        texts.pop()
        if not texts:
            return None
        pieces.put_nowait(None)  # the end comes on the next call
    return texts  # type: ignore[return-value]


def sse(data: dict[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {text}\n\n".encode()


def _hostname(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:  # e.g. an unclosed "[" in a Host header
        return ""


def _is_loopback_name(name: str) -> bool:
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` stands for is a loopback address."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


class Server:
    """The Starlette app and what it shares: the model host, the conversations, the gate, the worker thread."""

    def __init__(self, options: ServeOptions, config: Config) -> None:
        self.options, self.config = options, config
        models_store = Store(database_path())  # the registry's table lives in the history database
        self.history_store = models_store if options.history else Store(":memory:")
        self.host = ModelHost(Registry(models_store), config)
        self.conversations = Conversations(self.history_store, config, options.history)
        self.gate = Gate(options.queue)
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="assistant-serve")
        self.jobs: set[Job] = set()
        self.durations: deque[float] = deque(maxlen=20)
        self.counts = {"started": 0, "finished": 0}  # requests that reached the engine; only ever grow
        self.stopping = False
        self.started = int(time.time())
        self._activity = asyncio.Event()
        self.app = Starlette(
            routes=[
                Route("/health", self.health, methods=["GET"]),
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
            ],
            exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _internal_error},
            lifespan=self._lifespan,
        )

    # -- endpoints
    async def health(self, request: Request) -> Response:
        self._guard(request)
        return JSONResponse({"status": "ok", "model": self.host.loaded, "busy": self.gate.busy,
                             "queued": self.gate.waiting, "unloads": self.host.unloads, **self.counts})

    async def models(self, request: Request) -> Response:
        self._guard(request)
        names = await asyncio.to_thread(self.host.names)
        data = [{"id": name, "object": "model", "created": self.started, "owned_by": "assistant"} for name in names]
        return JSONResponse({"object": "list", "data": data})

    async def chat(self, request: Request) -> Response:
        self._guard(request)
        chat = parse_chat(parse_json(await self._body(request)), self.options.max_tokens)
        target = self.host.target(chat.model)  # a quick read, done here: a thread hop costs more on a busy machine
        grammar = grammar_for(chat.json_schema) if chat.json_schema is not None else None
        if not self.gate.admit():
            raise ApiError(429, f"the server is busy ({self.gate.waiting} requests waiting); retry later",
                           "requests", code="rate_limit_exceeded", headers={"Retry-After": str(self._retry_after())})
        job = Job(chat, target, grammar)
        return self._stream(job) if chat.stream else await self._complete(job, request)

    # -- guards
    def _guard(self, request: Request) -> None:
        """With an API key: check it (constant time). Without: only loopback hosts, never a web page elsewhere."""
        if self.options.api_key:
            header = request.headers.get("authorization", "")
            given = header[7:].strip() if header[:7].lower() == "bearer " else ""
            if not hmac.compare_digest(given.encode(), self.options.api_key.encode()):
                raise ApiError(401, "invalid or missing API key: send Authorization: Bearer KEY",
                               code="invalid_api_key")
            return
        origin = request.headers.get("origin")
        if not _is_loopback_name(_hostname("//" + request.headers.get("host", ""))) or (
            origin and not _is_loopback_name(_hostname(origin))
        ):
            raise ApiError(403, "requests from other hosts or web pages need an API key (serve with --api-key-env)",
                           "permission_error", code="forbidden")

    async def _body(self, request: Request) -> bytes:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json":
            raise ApiError(415, "send the request body as JSON (Content-Type: application/json)")
        limit = self.options.max_body_bytes
        too_large = ApiError(413, f"the request body is larger than this server's limit of {limit} bytes",
                             code="request_too_large")
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise too_large
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_large
        return bytes(body)

    def _retry_after(self) -> int:
        mean = sum(self.durations) / len(self.durations) if self.durations else 1.0
        return max(1, min(3600, math.ceil(mean * (self.gate.waiting + 1))))

    # -- running a job
    async def _complete(self, job: Job, request: Request) -> Response:
        task = asyncio.ensure_future(self._run(job))
        gone = asyncio.ensure_future(_disconnected(request.receive))
        try:
            await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not task.done():  # the client went away: stop its answer; nobody is left to read a response
            job.cancel()
            task.cancel()
            return Response(status_code=499)
        outcome = task.result()
        body = {
            "id": "chatcmpl-" + secrets.token_hex(12), "object": "chat.completion", "created": int(time.time()),
            "model": job.request.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": outcome.text},
                         "logprobs": None, "finish_reason": outcome.finish_reason}],
            "usage": outcome.usage(), "timings": outcome.timings(),
        }
        return JSONResponse(body)

    def _stream(self, job: Job) -> Response:
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        job.emit = lambda text: loop.call_soon_threadsafe(pieces.put_nowait, text)
        task = asyncio.ensure_future(self._run(job))
        task.add_done_callback(lambda _: pieces.put_nowait(None))  # after every piece the worker emitted

        def gone() -> None:
            job.cancel()
            task.cancel()

        return EventStream(self._events(job, task, pieces), on_disconnect=gone)

    async def _events(
        self, job: Job, task: asyncio.Future[Outcome], pieces: asyncio.Queue[str | None]
    ) -> AsyncIterator[bytes]:
        base = {"id": "chatcmpl-" + secrets.token_hex(12), "object": "chat.completion.chunk",
                "created": int(time.time()), "model": job.request.model}

        def chunk(delta: dict[str, str], finish: str | None = None, **extra: Any) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return sse({**base, "choices": [choice], **extra})

        yield chunk({"role": "assistant", "content": ""})
        while (texts := await _drain(pieces)) is not None:
            yield b"".join(chunk({"content": text}) for text in texts)  # one write for the pieces that piled up
        if task.cancelled():
            return
        if isinstance(error := task.exception(), ApiError):
            yield sse(error.body())
            return
        if error is not None:
            yield sse(_internal(error).body())
            return
        outcome = task.result()
        yield chunk({}, outcome.finish_reason, timings=outcome.timings())
        if job.request.include_usage:
            yield sse({**base, "choices": [], "usage": outcome.usage()})
        yield sse("[DONE]")

    async def _run(self, job: Job) -> Outcome:
        """Wait for the engine's turn, then answer on the worker thread (which a cancel here never abandons)."""
        self.jobs.add(job)
        try:
            await self.gate.turn.acquire()
        except BaseException:  # the client left while waiting
            self.jobs.discard(job)
            self.gate.leave()
            raise
        self.counts["started"] += 1
        started = time.monotonic()

        def done(_: object) -> None:
            self.counts["finished"] += 1
            self.durations.append(time.monotonic() - started)
            self.host.last_used = time.monotonic()
            self.jobs.discard(job)
            self.gate.leave()
            self.gate.turn.release()
            self._activity.set()

        try:
            future = asyncio.get_running_loop().run_in_executor(self.worker, self._answer, job)
        except BaseException:
            done(None)
            raise
        future.add_done_callback(done)
        return await asyncio.shield(future)

    def _answer(self, job: Job) -> Outcome:
        """On the worker thread: one turn through a session, relaying the pieces as they come."""
        if job.cancelled.is_set():
            raise self._stopped()
        chat, target = job.request, job.target
        engine = self.host.engine_for(target.model)
        started, first = time.perf_counter(), 0.0  # as an in-process caller: a Session, then its send
        session = self.conversations.session(chat, target, engine)
        session.sampling = {"stop": chat.stop, "seed": chat.seed, "grammar": job.grammar}
        if chat.top_p is not None:
            session.sampling["top_p"] = chat.top_p
        job.session = session
        if job.cancelled.is_set():
            session.cancel()
        stream = session.send(
            chat.question,
            max_tokens=min(chat.max_tokens or target.max_tokens or self.config.generation.max_tokens,
                           self.options.max_tokens),
            temperature=chat.temperature if chat.temperature is not None else target.temperature,
            escalate=self._policy(job),
        )
        try:
            for delta in stream:
                if not first and delta.text:
                    first = time.perf_counter() - started
                job.tokens += 1
                if job.cancelled.is_set():
                    break
                if job.emit is not None and delta.text:
                    job.emit(delta.text)
        except AssistantError as exc:
            raise _generation_error(exc) from None
        finally:
            stream.close()
        if job.cancelled.is_set():
            why = "the server is stopping" if self.stopping else "a client went away"
            log(f"{why}: its answer stopped {job.tokens - job.tokens_at_cancel} token(s) later "
                f"and is stored as cancelled")
        turn = session.last
        finish = turn.stats.finish_reason
        assert session.conversation_id is not None
        if self.stopping and job.cancelled.is_set():
            raise self._stopped()
        self.conversations.finished(chat, turn.answer, session.conversation_id, engine, finish in ("stop", "length"))
        return Outcome(turn.answer, finish if finish in ("stop", "length") else "stop",
                       turn.stats.prompt_tokens, turn.stats.completion_tokens, turn.stats.reused_tokens, first,
                       turn.stats.tokens_per_s)

    def _stopped(self) -> ApiError:
        """For a job cancelled before or while it ran: the client left (nobody reads this) or the server stops."""
        if self.stopping:
            return ApiError(503, "the server is stopping; the answer was cut off", "server_error", code="shutting_down")
        return ApiError(499, "the client went away")

    def stop_answers(self) -> None:
        """Ctrl-C / SIGTERM: every answer stops at its next token and its stream ends, so the exit is quick."""
        self.stopping = True
        for job in list(self.jobs):
            job.cancel()

    def _policy(self, job: Job) -> str:
        """Escalation through the server only where the config says ``auto`` (never ``ask``: nobody to ask)."""
        plain = job.grammar is None and not job.request.stop
        return "auto" if self.config.escalation.policy == "auto" and plain else "never"

    # -- life cycle
    def preload(self, name: str) -> None:
        """Load a model (or a persona's) before serving; raises AssistantError with one line."""
        try:
            self.host.engine_for(self.host.target(name).model)
        except ApiError as exc:
            raise AssistantError(f"--model {name}: {exc.message}") from None

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        unloader = asyncio.ensure_future(self._unload_when_idle()) if self.options.idle_unload_s > 0 else None
        try:
            yield
        finally:
            if unloader is not None:
                unloader.cancel()
            self.stop_answers()
            self.worker.shutdown(wait=True)  # the jobs stop at their next token
            self.host.unload()

    async def _unload_when_idle(self) -> None:
        idle = self.options.idle_unload_s
        loop = asyncio.get_running_loop()
        while True:
            due = self.host.last_used + idle - time.monotonic()
            if self.host.engine is None or self.gate.busy or due > 0:
                self._activity.clear()
                with contextlib.suppress(asyncio.TimeoutError):  # woken by a finished job, or at the due time
                    await asyncio.wait_for(self._activity.wait(), timeout=max(due, 0.05) if due > 0 else idle)
                continue
            async with self.gate.turn:
                if time.monotonic() - self.host.last_used >= idle:
                    await loop.run_in_executor(self.worker, self.host.unload)


def _generation_error(exc: AssistantError) -> ApiError:
    message = str(exc)
    if "does not fit" in message:
        return ApiError(400, "the messages do not fit the model's context window; send fewer or shorter ones",
                        param="messages", code="context_length_exceeded")
    log(f"generation failed: {message}")
    return ApiError(500, "generation failed; see the server's log", "server_error")


def _internal(exc: BaseException) -> ApiError:
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
    error = _internal(exc)
    return JSONResponse(error.body(), status_code=500)


# -- running
def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (0: a free port), or one clear error."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise AssistantError(f"cannot listen on {host!r}: {getattr(exc, 'strerror', None) or exc}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise AssistantError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def serve(options: ServeOptions, config: Config) -> None:
    """Serve until interrupted; the URL line goes to stdout once connections are accepted."""
    if not options.api_key and not is_loopback(options.host):
        raise AssistantError(
            f"refusing to listen on {options.host}, which other machines can reach, without an API key: "
            "set one with --api-key-env VAR"
        )
    server = Server(options, config)
    if options.model:
        server.preload(options.model)
    sock = bind(options.host, options.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"assistant serve: listening on http://{shown}:{port}/v1"
          f" ({'API key required' if options.api_key else 'no API key: this machine only'};"
          f" history {'on' if options.history else 'off'}; Ctrl-C stops)", flush=True)
    settings = uvicorn.Config(server.app, log_level="warning", access_log=False, lifespan="on",
                              timeout_graceful_shutdown=3)
    StoppingServer(settings, on_exit=server.stop_answers).run(sockets=[sock])


class StoppingServer(uvicorn.Server):
    """uvicorn's server that, on Ctrl-C or SIGTERM, first stops the answers in progress."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_exit = on_exit

    def handle_exit(self, sig: int, frame: Any) -> None:
        try:  # in the event loop, not inside whatever frame the signal interrupted
            asyncio.get_running_loop().call_soon_threadsafe(self.on_exit)
        except RuntimeError:  # no loop running yet
            self.on_exit()
        super().handle_exit(sig, frame)
