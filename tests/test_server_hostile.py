"""`assistant serve` against hostile or unusual clients (issue 26, rows 5-9): a real server on loopback.

Each test talks to a real `assistant serve` process through real clients: raw bytes over httpx, the
`openai` SDK, and raw sockets (parsed by h11, the HTTP library uvicorn itself uses) where a client must
do something no HTTP library does, such as half-closing its socket.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import h11
import httpx
import openai
import pytest
from server_helpers import stream_chunks

from assistant.server.request import ApiError, parse_chat
from assistant.storage.store import Store
from bench.serve_process import ServeProcess

MODEL = "smollm2-135m"
QUESTION = [{"role": "user", "content": "Name three primary colours."}]
LONG = "Write a long essay about the history of Rome."


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """One server (history on, no API key) shared by the tests that need no options of their own."""
    with ServeProcess(tmp_path_factory.mktemp("hostile-home"), timeout=180) as process:
        yield process


def client(server: ServeProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key="not-needed", max_retries=0, timeout=180)


def post_raw(server: ServeProcess, body: bytes) -> httpx.Response:
    """A chat request whose body is sent byte for byte, as a hand-written client would."""
    headers = {"Content-Type": "application/json"}
    return httpx.post(f"{server.url}/chat/completions", content=body, headers=headers, timeout=180)


def tracebacks(server: ServeProcess, since: int) -> list[str]:
    return [
        line
        for line in server.stderr[since:]
        if "Traceback" in line or "Exception in ASGI" in line or "never retrieved" in line
    ]


def answers_to(server: ServeProcess, question: str) -> list[dict]:
    """The stored answers (in order) of the conversations whose question was ``question``."""
    store = Store(server.home / "assistant.db")
    found = []
    for conversation in store.conversations():
        messages = store.messages(conversation["id"])
        if any(m.role == "user" and m.content == question for m in messages):
            found += [m for m in messages if m.role == "assistant"]
    return found


def serve_once(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`assistant serve ARGS`, expected to refuse at start; a server that starts anyway is stopped after 60 s."""
    environment = os.environ | {"ASSISTANT_HOME": str(home)} | (env or {})
    command = [sys.executable, "-m", "assistant", "serve", "--port", "0", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
    try:
        out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate(timeout=30)
        pytest.fail(f"`assistant serve {' '.join(args)}` started instead of refusing: {out}{err}")
    return subprocess.CompletedProcess(command, process.returncode, out, err)


# -- row 5: inputs that raised inside the server
def test_a_lone_surrogate_becomes_u_fffd_and_is_answered(server: ServeProcess) -> None:
    """JSON can spell a lone surrogate (``"\\ud800"``) that no UTF-8 text can hold: SQLite (and the JSON
    reply) cannot encode it. As the CLI does with bytes that are not UTF-8, it becomes U+FFFD and the
    request is answered; bytes that are not UTF-8 in the body are treated the same way."""
    logged = len(server.stderr)
    body = '{"model": "%s", "max_tokens": 4, "temperature": 0, "messages": [{"role": "user", "content": "%s"}]}'
    reply = post_raw(server, (body % (MODEL, "hi \\ud800 lone")).encode())
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"]
    assert answers_to(server, "hi \ufffd lone")  # stored, with U+FFFD in its place
    reply = post_raw(server, (body % (MODEL, "caf\udce9 bytes")).encode("utf-8", "surrogateescape"))  # a Latin-1 é
    assert reply.status_code == 200, reply.text
    assert answers_to(server, "caf\ufffd bytes")
    missing = post_raw(server, (body % ("no-such-\\udfff", "hi")).encode())  # the error reply names it too
    assert missing.status_code == 404 and "no-such-\ufffd" in missing.json()["error"]["message"]
    assert tracebacks(server, logged) == []


def test_a_deeply_nested_body_is_a_400_not_a_crash(server: ServeProcess) -> None:
    """An array nested 100,000 deep made the JSON parser raise RecursionError (a 500 and a traceback). It is
    a malformed request: 400 in OpenAI's shape. Nesting that parses but is deeper than any real request
    (which later code might recurse through) is refused the same way."""
    logged = len(server.stderr)
    deep = 100_000
    for body in (
        b'{"model": "%s", "messages": ' % MODEL.encode() + b"[" * deep + b"]" * deep + b"}",
        b'{"model": "m", "metadata": ' + b'{"a": ' * deep + b"1" + b"}" * deep + b"}",
        b'{"model": "m", "extra": ' + b"[" * 500 + b"]" * 500 + b', "messages": []}',
    ):
        reply = post_raw(server, body)
        assert reply.status_code == 400, reply.text[:200]
        error = reply.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and "nested too deeply" in error["message"]
    assert tracebacks(server, logged) == []


# -- row 6: logprobs
def test_logprobs_are_real_in_whole_and_streamed_answers(server: ServeProcess) -> None:
    """``logprobs: true`` returns the engine's own log-probability of each generated token, in OpenAI's shape:
    one entry per completion token, each <= 0, whose tokens join to the answer; a streamed answer carries
    each token's entry in the chunk that carries its text."""
    sdk = client(server)
    ask = [{"role": "user", "content": "Name three animals that live in the sea."}]
    reply = sdk.chat.completions.create(model=MODEL, messages=ask, max_tokens=16, temperature=0, logprobs=True)
    choice = reply.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content, choice
    entries = choice.logprobs.content
    assert len(entries) == reply.usage.completion_tokens
    assert "".join(e.token for e in entries) == choice.message.content
    for entry in entries:
        assert entry.logprob <= 0 and entry.bytes == list(entry.token.encode()) and entry.top_logprobs == []
    assert any(e.logprob < 0 for e in entries)  # real values, not placeholders
    chunks = stream_chunks(sdk, ask, 16, logprobs=True, stream_options={"include_usage": True})
    streamed = []
    for chunk in chunks:
        if chunk.choices and chunk.choices[0].delta.content:
            assert chunk.choices[0].logprobs is not None  # a chunk's text comes with its tokens' entries
        if chunk.choices and chunk.choices[0].logprobs is not None:
            streamed += chunk.choices[0].logprobs.content or []
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == choice.message.content  # greedy: the same answer both ways
    assert [e.token for e in streamed] == [e.token for e in entries]
    assert len(streamed) == chunks[-1].usage.completion_tokens and all(e.logprob <= 0 for e in streamed)
    plain = sdk.chat.completions.create(model=MODEL, messages=ask, max_tokens=4, temperature=0)
    assert plain.choices[0].logprobs is None  # only when asked


def test_top_logprobs_is_refused_with_a_reason(server: ServeProcess) -> None:
    """The engine keeps only the chosen token's logprob, not the alternatives: asking for ``top_logprobs``
    gets a 400 that says so, rather than a silently empty list the client would misread."""
    sdk = client(server)
    with pytest.raises(openai.BadRequestError, match="top_logprobs") as refused:
        sdk.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=4, logprobs=True, top_logprobs=3)
    assert "alternative" in refused.value.message
    with pytest.raises(openai.BadRequestError, match="logprobs"):
        sdk.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=4, top_logprobs=0)
    reply = sdk.chat.completions.create(
        model=MODEL, messages=QUESTION, max_tokens=4, temperature=0, logprobs=True, top_logprobs=0
    )
    assert reply.choices[0].logprobs.content


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"logprobs": "yes"}, "logprobs"),
        ({"logprobs": True, "top_logprobs": 1}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": -1}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 1.5}, "top_logprobs"),
        ({"top_logprobs": 0}, "top_logprobs"),
    ],
)
def test_logprobs_fields_are_checked(fields: dict, param: str) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    with pytest.raises(ApiError) as error:
        parse_chat(body, 100)
    assert error.value.status == 400 and error.value.param == param


# -- row 7: an API key no header can carry
@pytest.mark.parametrize("key", ["clé-secrète", "key-with-newline\n", " padded-key"])
def test_a_key_http_headers_cannot_carry_is_refused_at_start(tmp_path: Path, key: str) -> None:
    """A key with non-ASCII or control characters (or edge spaces, which header parsing strips) can never be
    sent in ``Authorization: Bearer``: a server started with it would refuse every client. Refused at start in
    one line, without echoing the secret."""
    out = serve_once(tmp_path, "--api-key-env", "HOSTILE_KEY", env={"HOSTILE_KEY": key})
    assert out.returncode != 0 and out.stdout == ""
    assert out.stderr.startswith("assistant: error: ") and out.stderr.count("\n") == 1, out.stderr
    assert "API key" in out.stderr and key.strip() not in out.stderr and "Traceback" not in out.stderr


# -- row 8: --host
def test_a_bracketed_ipv6_loopback_is_served(tmp_path: Path) -> None:
    """``[::1]`` is how URLs spell the IPv6 loopback; a user copying it from a URL means ::1, which is loopback."""
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    with ServeProcess(tmp_path, "--host", "[::1]", timeout=180) as server:
        assert server.url.startswith("http://[::1]:")
        assert httpx.get(f"{server.url}/models", timeout=60).json()["data"]


@pytest.mark.parametrize("host", ["127.0.0.1 ", "", "local host", "[127.0.0.1]", "::1]", "127.0.0.1:8181", "http://x"])
def test_a_malformed_host_is_named_as_malformed(tmp_path: Path, host: str) -> None:
    """A malformed ``--host`` is a typo to fix, not an address other machines can reach: say that."""
    out = serve_once(tmp_path, "--host", host)
    assert out.returncode != 0 and out.stdout == "" and out.stderr.count("\n") == 1, out.stderr
    assert "not a valid address" in out.stderr and repr(host) in out.stderr, out.stderr


# -- row 9: a client that half-closes its socket
def exchange(server: ServeProcess, body: dict, then: str, timeout: float = 180.0) -> tuple[h11.Response | None, bytes]:
    """Send one chat request on a raw socket, then ``shutdown`` (half-close) or ``close``; read the reply
    (h11 parses it) until the server closes the connection, within ``timeout`` seconds."""
    conn = h11.Connection(h11.CLIENT)
    data = json.dumps(body).encode()
    headers = [("Host", f"127.0.0.1:{server.port}"), ("Content-Type", "application/json")]
    headers.append(("Content-Length", str(len(data))))
    request = conn.send(h11.Request(method="POST", target="/v1/chat/completions", headers=headers))
    request += conn.send(h11.Data(data=data)) + conn.send(h11.EndOfMessage())
    deadline = time.monotonic() + timeout
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:
        sock.sendall(request)
        if then == "close":
            return None, b""
        sock.shutdown(socket.SHUT_WR)
        received = bytearray()
        while chunk := _recv(sock, deadline):
            received += chunk
    finally:
        sock.close()
    if not received:
        return None, b""  # the server sent nothing at all
    conn.receive_data(bytes(received))
    conn.receive_data(b"")
    response, body_bytes = None, bytearray()
    while (event := conn.next_event()) not in (h11.NEED_DATA, h11.PAUSED) and not isinstance(
        event, h11.ConnectionClosed | h11.EndOfMessage
    ):
        if isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            body_bytes += event.data
    return response, bytes(body_bytes)


def _recv(sock: socket.socket, deadline: float) -> bytes:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("the server neither answered nor closed the connection in time")
    sock.settimeout(remaining)
    return sock.recv(65536)


@pytest.mark.timeout(400)
def test_a_half_closed_client_gets_its_whole_answer(server: ServeProcess) -> None:
    """A client may shut down its sending side once its request is sent (``shutdown(SHUT_WR)``, as
    ``nc -N`` and some scripts do): it still reads. curl, nginx and llama.cpp's server answer it; so
    must this server, whole and streamed, and then close the connection (no second request can come)."""
    logged = len(server.stderr)
    ask = {"model": MODEL, "messages": QUESTION, "max_tokens": 8, "temperature": 0}
    started = time.monotonic()
    response, body = exchange(server, ask, "shutdown")
    assert response is not None and response.status_code == 200, body
    whole = json.loads(body)
    assert whole["choices"][0]["message"]["content"] and whole["choices"][0]["finish_reason"] in ("stop", "length")
    response, body = exchange(server, {**ask, "stream": True}, "shutdown")
    assert response is not None and response.status_code == 200, body
    events = [line[6:] for line in body.decode().splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]", events
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert text == whole["choices"][0]["message"]["content"]  # greedy: the same answer, in full
    assert time.monotonic() - started < 170  # closed after the answer, not left open until a timeout
    assert tracebacks(server, logged) == []


@pytest.mark.timeout(300)
def test_a_client_that_closes_its_socket_still_stops_its_stream(server: ServeProcess) -> None:
    """The other side of row 9: a client that closes its socket (not just its sending side) after sending a
    streamed request is gone; the server learns it from its next write and stops the answer at once."""
    question = f"{LONG} ({time.monotonic_ns()})"
    before, logged = server.health(), len(server.stderr)
    ask = {"model": MODEL, "messages": [{"role": "user", "content": question}], "max_tokens": 1500}
    exchange(server, {**ask, "temperature": 0, "stream": True}, "close")
    health = server.wait_health(lambda h: h["finished"] > before["finished"], "the abandoned stream to end", 120)
    assert not health["busy"]
    for answer in answers_to(server, question):  # stored only if it had started
        assert answer["finish_reason"] == "cancelled" and answer["completion_tokens"] < 50, answer
    assert tracebacks(server, logged) == []


def test_a_body_cut_short_is_logged_without_a_traceback(server: ServeProcess) -> None:
    """A client that sends half a body and closes its socket is gone: one log line says so, no traceback
    (found while checking row 9: the request ends before its body does)."""
    logged = len(server.stderr)
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"model"'
        )
        sock.shutdown(socket.SHUT_WR)
        assert _recv(sock, time.monotonic() + 60) == b""  # the server closes: it cannot answer half a request
    server.wait_line("before sending its whole request", since=logged, timeout=60)
    assert tracebacks(server, logged) == []
