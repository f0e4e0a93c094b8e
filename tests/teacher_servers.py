"""Teacher endpoints on 127.0.0.1 for the escalation tests.

``FakeTeacher``: a tiny http.server that speaks the chat-completions protocol and can
misbehave on demand (HTTP 500, slow, garbage, cut-off stream), recording every request's
bytes. ``LlamaTeacher``: llama-cpp-python's own OpenAI-compatible server running a real GGUF (a ``ChildServer``
from bench/serve_process.py, which also runs `assistant serve` for the tests and benchmarks).
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench.serve_process import ChildServer, free_port

__all__ = ["ANSWER", "HOSTILE", "FakeTeacher", "LlamaTeacher", "free_port"]

ANSWER = ["Seretse", " Khama", " was", " first", "."]
# a hostile teacher: window title, screen clear, OSC 52 clipboard write, C1 CSI, bidi override
HOSTILE = ["Paris", "\x1b]0;PWNED\x07", " \x1b[2J", "\x1b]52;c;cm0gLXJmIH4=\x07", " \x9b31mred", " \u202egnp.exe", "."]


UVICORN_READY = re.compile(r"Uvicorn running on (http://\S+?)(?:\s|$)")


def _chunk(content: str | None = None, finish: str | None = None) -> bytes:
    delta = {"content": content} if content is not None else {}
    body = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(body)}\n\n".encode()


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        try:
            getattr(self, "_" + self.server.mode)()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test): expected

    def _start(self, status: int = 200, kind: str = "text/event-stream") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.end_headers()

    def _ok(self) -> None:
        self._start()
        for piece in ANSWER:
            self.wfile.write(_chunk(piece))
            self.wfile.flush()
        self.wfile.write(_chunk(finish="stop") + b"data: [DONE]\n\n")

    def _hostile(self) -> None:
        self._start()
        for piece in HOSTILE:
            self.wfile.write(_chunk(piece))
        self.wfile.write(_chunk(finish="stop") + b"data: [DONE]\n\n")

    def _json(self) -> None:
        self._start(kind="application/json")
        choice = {"index": 0, "message": {"role": "assistant", "content": "".join(ANSWER)}, "finish_reason": "stop"}
        self.wfile.write(json.dumps({"choices": [choice]}).encode())

    def _error500(self) -> None:
        self._start(500, "text/plain")
        self.wfile.write(b"internal error: teacher overloaded")

    def _echo401(self) -> None:  # a careless server that echoes the credentials it got
        self._start(401, "text/plain")
        self.wfile.write(f"bad credentials: {self.headers.get('Authorization')}".encode())

    def _slow(self) -> None:
        time.sleep(self.server.delay)
        self._ok()

    def _garbage(self) -> None:
        self._start()
        self.wfile.write(b"data: {this is not json\n\ndata: <html>oops</html>\n\n")

    def _truncated(self) -> None:  # some content, then the connection drops: no finish, no [DONE]
        self._start()
        for piece in ANSWER[:2]:
            self.wfile.write(_chunk(piece))
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    mode = "ok"
    delay = 2.0
    requests: list[dict]


class FakeTeacher:
    """A chat-completions endpoint on a free loopback port, running in a thread."""

    def __init__(self) -> None:
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.requests = []
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def requests(self) -> list[dict]:
        return self.server.requests

    def set(self, mode: str, delay: float = 2.0) -> None:
        self.server.mode, self.server.delay = mode, delay
        self.server.requests.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class LlamaTeacher(ChildServer):
    """``python -m llama_cpp.server`` serving a real GGUF on a free loopback port."""

    def __init__(
        self,
        model: Path,
        alias: str = "gemma-3-270m",
        timeout_s: float = 90.0,
        chat_format: str = "gemma",
        port: int = 0,
    ) -> None:
        command = [
            sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", alias,
            "--host", "127.0.0.1", "--port", str(port), "--chat_format", chat_format,
            "--n_ctx", "1024", "--n_threads", "1",
        ]  # fmt: skip
        super().__init__(command, UVICORN_READY, timeout=timeout_s, name="llama_cpp.server")
        self.url = self.ready.group(1) + "/v1"
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])
        self.model = alias

    def close(self) -> None:
        self.stop()
