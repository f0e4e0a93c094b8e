"""Privacy: with escalation off a whole session opens no network connection; the API key never leaks.

Every CLI run gets a sitecustomize.py whose audit hook records each socket.connect / getaddrinfo /
bind / sendto attempt of the real process to a file.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from reliability_helpers import run_cli

AUDIT = """
import json, os, sys
_log = os.environ["SOCKET_AUDIT_LOG"]
def _hook(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "socket.bind", "socket.sendto", "socket.gethostbyname"):
        with open(_log, "a") as handle:
            handle.write(json.dumps([event, repr(args[1:] if event != "socket.getaddrinfo" else args)[:200]]) + "\\n")
sys.addaudithook(_hook)
"""
SECRET = "sk-test-DO-NOT-LEAK-9f8e7d6c5b4a"


@pytest.fixture
def audited(tmp_path: Path):
    """(extra environment, function returning the recorded socket events)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(AUDIT)
    log = tmp_path / "sockets.jsonl"
    env = {"PYTHONPATH": str(site), "SOCKET_AUDIT_LOG": str(log)}
    return env, lambda: [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_audit_hook_sees_connections(audited, assistant_home: Path) -> None:
    """Positive control: the same hook records a real connection attempt."""
    env, events = audited
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    code = f"import socket; socket.create_connection(('127.0.0.1', {port})).close()"
    import os
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, check=True, timeout=60)
    server.close()
    assert any(e[0] == "socket.connect" and str(port) in e[1] for e in events())


def test_whole_session_with_escalation_off_opens_no_socket(audited, assistant_home: Path) -> None:
    env, events = audited
    env["TEACHER_API_KEY"] = SECRET
    (assistant_home / "config.toml").write_text(
        '[teacher]\nurl = "http://127.0.0.1:9/v1"\nmodel = "t"\napi_key_env = "TEACHER_API_KEY"\n'
        '[escalation]\npolicy = "never"\n'
    )
    steps = [
        ("ask", "--max-tokens", "8", "--temperature", "0", "What is the capital of France?"),
        ("ask", "-c", "--max-tokens", "8", "--temperature", "0", "And of Italy?"),
        ("history", "list"),
        ("history", "search", "capital"),
        ("history", "show", "1"),
        ("history", "export", "1", "--format", "json", "-o", str(assistant_home / "export.json")),
        ("models", "list"),
    ]
    for args in steps:
        result = run_cli(assistant_home, *args, **env)
        assert result.returncode == 0, (args, result.stderr)
        assert SECRET not in result.stdout + result.stderr
    assert events() == [], f"network activity with escalation off: {events()}"
    print(f"\nsockets opened with escalation off over {len(steps)} commands: {len(events())}")
    _assert_secret_nowhere(assistant_home)


class _EchoingTeacher(BaseHTTPRequestHandler):
    """A hostile or broken teacher: answers 500 with the request's Authorization header in the body."""

    def do_POST(self) -> None:  # noqa: N802
        body = f"internal error; you sent {self.headers.get('Authorization')}".encode()
        self.send_response(500 if "fail" in self.server.mode else 200)
        if "fail" in self.server.mode:
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        answer = {"choices": [{"message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}]}
        self.wfile.write(json.dumps(answer).encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("mode", ["fail", "answer"])
def test_escalation_contacts_only_the_teacher_and_never_leaks_the_key(mode: str, audited, assistant_home: Path):
    env, events = audited
    server = HTTPServer(("127.0.0.1", 0), _EchoingTeacher)
    server.mode = mode
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    env["TEACHER_API_KEY"] = SECRET
    (assistant_home / "config.toml").write_text(
        f'[teacher]\nurl = "http://127.0.0.1:{port}/v1"\nmodel = "t"\napi_key_env = "TEACHER_API_KEY"\nretries = 0\n'
        '[escalation]\npolicy = "auto"\nmin_confidence = 1.0\nmin_factual = 0.0\n'
    )
    try:
        result = run_cli(
            assistant_home, "ask", "--max-tokens", "8", "--temperature", "0", "What is the capital of France?", **env
        )
    finally:
        server.shutdown()
    assert SECRET not in result.stdout + result.stderr
    connects = [e for e in events() if e[0] == "socket.connect"]
    assert connects, "escalation on should have contacted the teacher"
    assert all(f"('127.0.0.1', {port})" in e[1] for e in connects), connects
    _assert_secret_nowhere(assistant_home)


def test_indexing_and_searching_your_documents_opens_no_socket(audited, assistant_home: Path, tmp_path: Path) -> None:
    """``assistant docs``: the embedding model, the index and its search work with the network unused (issue 28)."""
    env, events = audited
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "garden.md").write_text("# Garden\n\nTomatoes need full sun and deep watering twice a week.\n")
    (notes / "bikes.txt").write_text("Chain lube every 300 km keeps a bicycle drivetrain quiet.\n")
    steps = [
        ("docs", "add", str(notes)),
        ("docs", "search", "how often do I water tomatoes", "--json"),
        ("docs", "list"),
        ("docs", "add", str(notes)),  # the incremental run: nothing changed
        ("docs", "rm", str(notes / "bikes.txt")),
    ]
    for args in steps:
        result = run_cli(assistant_home, *args, **env)
        assert result.returncode == 0, (args, result.stderr)
    assert "garden.md" in run_cli(assistant_home, "docs", "search", "tomatoes", **env).stdout
    assert events() == [], f"network activity while indexing or searching documents: {events()}"


def _assert_secret_nowhere(home: Path) -> None:
    """Not in the database (WAL and SHM included), logs, exports or anything else under the home."""
    for path in home.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), f"API key found in {path}"
