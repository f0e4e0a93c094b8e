"""`assistant serve`: the on-device models behind an OpenAI-compatible API on localhost.

``GET /v1/models``, ``POST /v1/chat/completions`` (whole, or streamed as server-sent events) and
``GET /health`` on Starlette + uvicorn. This module owns the app, its endpoints and its life cycle.
Each request (``request``) is a chat turn through a :class:`Session` (as the persona it names, if
any) with the request's own ``TurnOptions``, on the process's one :class:`ModelManager`: models load
on first use, swap between requests and unload after ``idle_unload_s`` seconds without a request.
The answer is stored in the history (marked "via API", under the model name the client asked for)
unless the server runs without history; a client that resends the growing message list of one
chat continues the same stored conversation (``conversations``), so the engine evaluates only
what is new. ``response_format`` goes through ``assistant.models.schema`` (grammar and check), as
``assistant ask --schema`` does.

One request runs at a time, on one worker thread; at most ``queue`` more wait (``gate``) and
later ones get 429 with Retry-After. A client whose connection is lost (``stream``: a failed write,
not the end of its input, which a half-closing client sends too) stops its generation at the next
token; its stored answer keeps ``finish_reason = "cancelled"``; Ctrl-C and SIGTERM stop them all, even while a
long history is stored or fitted. A history too long for the window loses its oldest turns; a message too
long for it even alone is a 400 ``context_length_exceeded`` with the numbers, never cut, and leaves nothing
stored. ``logprobs: true`` reports the engine's logprob of each token it generated.

Secure by default (``guard``): loopback only unless an API key is set; bodies and max_tokens
are bounded; every error is OpenAI-style JSON, without paths or tracebacks (``response``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from assistant import AssistantError
from assistant.chat import persona as personas
from assistant.chat.persona import Persona
from assistant.chat.session import Session
from assistant.chat.turn import TurnOptions
from assistant.config import Config, database_path
from assistant.models.engine import ContextLengthError
from assistant.models.manager import ModelManager
from assistant.models.registry import DEFAULT_MODEL
from assistant.server.conversations import VIA, Conversations, Stopped
from assistant.server.gate import Gate
from assistant.server.guard import check_api_key, check_caller, is_loopback, listen_address, read_body
from assistant.server.request import ApiError, ChatRequest, grammar_for, parse_chat, parse_json
from assistant.server.response import (
    ERROR_HANDLERS,
    Outcome,
    chunks,
    completion,
    conforms,
    generation_error,
    log,
    token_logprob,
    warning_headers,
)
from assistant.server.stream import EventStream, HalfCloseProtocol, Piece, disconnected
from assistant.storage.store import Store


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


@dataclass
class Target:
    """What a requested model name stands for: the registered model that runs, and the persona if it is one."""

    model: str
    persona: Persona | None = None
    warnings: list[str] = field(default_factory=list)  # told to the client beside the answer (a stale persona)


@dataclass(eq=False)
class Job:
    """One chat request on its way through the gate and the engine."""

    request: ChatRequest
    target: Target
    grammar: Any = None
    emit: Callable[[Piece], object] | None = None  # streaming: called on the worker thread with each piece
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


class Server:
    """The Starlette app and what it shares: the model manager, the conversations, the gate, the worker thread."""

    def __init__(self, options: ServeOptions, config: Config) -> None:
        self.options, self.config = options, config
        models_store = Store(database_path())  # the registry's table lives in the history database
        self.history_store = models_store if options.history else Store(":memory:")
        self.models = ModelManager(config, models_store)
        self.conversations = Conversations(self.history_store, self.models, config, options.history)
        self.gate = Gate(options.queue)
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="assistant-serve")  # the only thread touching models
        self.jobs: set[Job] = set()
        self.counts = {"started": 0, "finished": 0, "unloads": 0}  # only ever grow
        self.last_used = time.monotonic()
        self.stopping = False
        self.started = int(time.time())
        self._clashes: set[str] = set()  # personas whose name a model has, said in the log
        self._activity = asyncio.Event()
        self.app = Starlette(
            routes=[
                Route("/health", self.health, methods=["GET"]),
                Route("/v1/models", self.list_models, methods=["GET"]),
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
            ],
            exception_handlers=ERROR_HANDLERS,
            lifespan=self._lifespan,
        )

    # -- endpoints
    async def health(self, request: Request) -> Response:
        check_caller(request, self.options.api_key)
        loaded = self.models.key if self.models.ready else None
        return JSONResponse(
            {"status": "ok", "model": loaded, "busy": self.gate.busy, "queued": self.gate.waiting, **self.counts}
        )

    async def list_models(self, request: Request) -> Response:
        check_caller(request, self.options.api_key)
        names = await asyncio.to_thread(self.names)
        data = [{"id": name, "object": "model", "created": self.started, "owned_by": "assistant"} for name in names]
        return JSONResponse({"object": "list", "data": data})

    async def chat(self, request: Request) -> Response:
        check_caller(request, self.options.api_key)
        chat = parse_chat(parse_json(await read_body(request, self.options.max_body_bytes)), self.options.max_tokens)
        target = self.target(chat.model)  # a quick read, done here: a thread hop costs more on a busy machine
        if chat.json_schema is None and target.persona is not None:
            chat.json_schema = target.persona.schema  # the persona's default; response_format overrides it
        grammar = grammar_for(chat.json_schema) if chat.json_schema is not None else None
        if not self.gate.admit():
            retry = {"Retry-After": str(self.gate.retry_after())}
            raise ApiError(
                429,
                f"the server is busy ({self.gate.waiting} requests waiting); retry later",
                "requests",
                code="rate_limit_exceeded",
                headers=retry,
            )
        job = Job(chat, target, grammar)
        return self._stream(job) if chat.stream else await self._complete(job, request)

    # -- names
    def names(self) -> list[str]:
        """Registered models, then personas: read on each call, so `assistant models`/`persona` changes show. A persona
        named like a model (in any case) is listed once: it is its own distilled student, or the model wins."""
        models = self.models.registry.names()
        shown = []
        for persona in personas.names():
            if not personas.same_name(persona, models):
                shown.append(persona)
            else:  # its student, or a model that answers to its name (the log says so)
                self._clash(persona, models)
        return [*models, *shown]

    def _clash(self, persona: str, models: list[str]) -> str:
        """The model that has the persona's name in some case and is not its own student ('' if none): that model
        answers to the name, and the server's log says so once."""
        model = personas.same_name(persona, models)
        if not model:
            return ""
        with contextlib.suppress(AssistantError):  # an unreadable persona loses its name to the model all the more
            if personas.load(persona).student.lower() == model.lower():
                return ""  # distillation registers the student under its persona's name
        if persona not in self._clashes:
            self._clashes.add(persona)
            log(f"persona {persona!r} has the name of the model {model!r}: the model answers to it; rename the persona")
        return model

    def target(self, name: str) -> Target:
        """The persona or model behind a name in any case (a model's file stem too); a model wins over a persona of
        the same name unless it is the persona's student. 404 for a name GET /v1/models does not list."""
        registry = self.models.registry
        models = registry.names()
        if (persona_name := personas.same_name(name, personas.names())) and not self._clash(persona_name, models):
            persona = self._persona(persona_name)
            warnings = [self._stale_note(persona)] if persona.state == "stale" else []
            return Target(persona.runtime_model() or self.config.model.default or DEFAULT_MODEL, persona, warnings)
        if (model := registry.lookup(name)) in models:
            return Target(model)
        raise ApiError(
            404,
            f"the model {name!r} does not exist; GET /v1/models lists the models",
            param="model",
            code="model_not_found",
        )

    def _persona(self, name: str) -> Persona:
        try:
            return personas.load(name)
        except AssistantError as exc:
            log(f"persona {name}: {exc}")
            raise ApiError(
                503,
                f"persona {name!r} cannot be read; see the server's log",
                "server_error",
                code="model_unavailable",
            ) from None

    def _stale_note(self, persona: Persona) -> str:
        """The stale persona's note, naming its model as the registry does (never a path on this machine)."""
        model = persona.model
        if model and (os.sep in model or model.endswith(".gguf")):
            model = self.models.registry.name_of(model)
        return dataclasses.replace(persona, model=model).stale_note()

    # -- running a job
    async def _complete(self, job: Job, request: Request) -> Response:
        task = asyncio.ensure_future(self._run(job))
        gone = asyncio.ensure_future(disconnected(request.receive))
        try:
            await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not task.done():  # the client went away: stop its answer; nobody is left to read a response
            job.cancel()
            task.cancel()
            return Response(status_code=499)
        warnings = job.target.warnings
        return JSONResponse(completion(job.request.model, task.result(), warnings), headers=warning_headers(warnings))

    def _stream(self, job: Job) -> Response:
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[Piece | None] = asyncio.Queue()
        job.emit = lambda piece: loop.call_soon_threadsafe(pieces.put_nowait, piece)
        task = asyncio.ensure_future(self._run(job))
        task.add_done_callback(lambda _: pieces.put_nowait(None))  # after every piece the worker emitted

        def gone() -> None:
            job.cancel()
            task.cancel()

        warnings = job.target.warnings
        return EventStream(
            chunks(job.request, task, pieces, warnings), on_disconnect=gone, headers=warning_headers(warnings)
        )

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

        def done(finished: asyncio.Future[Outcome] | None) -> None:
            if finished is not None and not finished.cancelled():
                finished.exception()  # retrieved: if the client left, nobody awaits it, and asyncio would log it
            self.counts["finished"] += 1
            self.last_used = time.monotonic()
            self.jobs.discard(job)
            self.gate.leave(self.last_used - started)
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
        chat = job.request
        self._use(job.target.model)
        started, first = time.perf_counter(), 0.0  # as an in-process caller: a Session, then its send
        try:
            session, continued = self.conversations.session(chat, job.target.persona, job.cancelled.is_set)
        except Stopped:
            raise self._stopped() from None
        except AssistantError as exc:  # e.g. a persona whose context does not fit this model
            raise generation_error(exc) from None
        job.session = session
        session.sampling["cancel"] = job.cancelled  # a stop before the engine starts the turn is not lost
        if job.cancelled.is_set():
            session.cancel()
        options = TurnOptions(
            via=VIA,
            model_label=chat.model,
            stop=tuple(chat.stop),
            seed=chat.seed,
            grammar=job.grammar,
            top_p=chat.top_p,
        )
        stream = session.send(
            chat.question,
            max_tokens=chat.max_tokens,
            temperature=chat.temperature,
            escalate=self._policy(job),
            options=options,
        )
        logprobs: list[dict[str, Any]] = []  # with chat.logprobs: one entry per token
        try:
            for delta in stream:
                if not first and delta.text:
                    first = time.perf_counter() - started
                job.tokens += 1
                if job.cancelled.is_set():
                    break
                entry = token_logprob(delta.text, delta.logprob) if chat.logprobs and delta.token >= 0 else None
                if entry is not None:
                    logprobs.append(entry)
                if job.emit is not None and (delta.text or entry):
                    job.emit((delta.text, entry))
        except AssistantError as exc:
            if isinstance(exc, ContextLengthError):  # refused before anything was generated: nothing to keep
                self.conversations.refused(chat, session, continued)
            raise generation_error(exc) from None
        finally:
            stream.close()
        if job.cancelled.is_set():
            why = "the server is stopping" if self.stopping else "a client went away"
            log(
                f"{why}: its answer stopped {job.tokens - job.tokens_at_cancel} token(s) later "
                f"and is stored as cancelled"
            )
        turn = session.last
        finish = turn.stats.finish_reason
        assert session.conversation_id is not None
        if self.stopping and job.cancelled.is_set():
            raise self._stopped()
        whole = finish in ("stop", "length")
        self.conversations.finished(chat, turn.answer, session.conversation_id, whole)
        if chat.json_schema is not None and finish == "stop":
            conforms(turn.answer, chat.json_schema)
        return Outcome(
            turn.answer,
            finish if whole else "stop",
            turn.stats.prompt_tokens,
            turn.stats.completion_tokens,
            turn.stats.reused_tokens,
            first,
            turn.stats.tokens_per_s,
            logprobs if chat.logprobs else None,
            turn.grounding.records(),  # a persona over documents: what the answer drew on
        )

    def _use(self, model: str) -> None:
        """On the worker thread: ``model`` serving, loaded or swapped in now if needed (503 if it cannot)."""
        before = self.models.ready
        try:
            if self.models.use(model):
                log(f"{'swapped in' if before else 'loaded'} {model}")
        except AssistantError as exc:
            log(f"cannot load {model}: {exc}")
            raise ApiError(
                503,
                f"the model {model!r} cannot be loaded on this machine; see the server's log",
                "server_error",
                code="model_unavailable",
            ) from None

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
        """Escalation through the server only where the config says ``auto`` (never ``ask``: nobody to ask), and
        only for plain requests (a teacher follows no grammar or stop strings and has no logprobs to give)."""
        plain = job.grammar is None and not job.request.stop and not job.request.logprobs
        return "auto" if self.config.escalation.policy == "auto" and plain else "never"

    # -- life cycle
    def preload(self, name: str) -> None:
        """Load a model (or a persona's) before serving; raises AssistantError with one line."""
        try:
            self._use(self.target(name).model)
        except ApiError as exc:
            raise AssistantError(f"--model {name}: {exc.message}") from None

    def _unload(self) -> None:
        name = self.models.key
        if self.models.unload():
            self.counts["unloads"] += 1
            log(f"unloaded {name}")

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
            self._unload()

    async def _unload_when_idle(self) -> None:
        idle = self.options.idle_unload_s
        loop = asyncio.get_running_loop()
        while True:
            due = self.last_used + idle - time.monotonic()
            if not self.models.ready or self.gate.busy or due > 0:
                self._activity.clear()
                with contextlib.suppress(asyncio.TimeoutError):  # woken by a finished job, or at the due time
                    await asyncio.wait_for(self._activity.wait(), timeout=max(due, 0.05) if due > 0 else idle)
                continue
            async with self.gate.turn:
                if time.monotonic() - self.last_used >= idle:
                    await loop.run_in_executor(self.worker, self._unload)


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
    address = listen_address(options.host)
    check_api_key(options.api_key)
    if not options.api_key and not is_loopback(address):
        raise AssistantError(
            f"refusing to listen on {address}, which other machines can reach, without an API key: "
            "set one with --api-key-env VAR"
        )
    server = Server(options, config)
    if options.model:
        server.preload(options.model)
    sock = bind(address, options.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(
        f"assistant serve: listening on http://{shown}:{port}/v1"
        f" ({'API key required' if options.api_key else 'no API key: this machine only'};"
        f" history {'on' if options.history else 'off'}; Ctrl-C stops)",
        flush=True,
    )
    settings = uvicorn.Config(
        server.app,
        http=HalfCloseProtocol,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=3,
    )
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
