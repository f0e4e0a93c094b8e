"""Server subprocesses for the tests and the benchmarks: started, watched, stopped, each wait bounded.

``ChildServer`` runs any server command, collects its output lines (``stdout``, ``stderr``) and
is ready once a line matches its ``ready`` pattern (the line that names the URL it listens on,
so port 0 can be used and no port is guessed). ``ServeProcess`` is ``assistant serve`` on a free
loopback port (tests/test_server.py, bench_server); tests/teacher_servers.py runs llama-cpp-python's
server through ``ChildServer`` too.
"""

from __future__ import annotations

import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent  # the repository root
READY = re.compile(r"listening on (http://\S+/v1)")


def free_port() -> int:
    """A loopback port nobody listens on now (for clients that must find nothing there)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ChildServer:
    """Starts ``command`` and waits (at most ``timeout`` s) for an output line matching ``ready``."""

    def __init__(
        self,
        command: list[str],
        ready: re.Pattern[str],
        env: dict[str, str] | None = None,
        timeout: float = 90.0,
        name: str = "server",
    ) -> None:
        self.name = name
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()  # both streams' lines; None when one ends
        self._readers = [
            threading.Thread(target=self._read, args=(stream, lines), daemon=True)
            for stream, lines in ((self.process.stdout, self.stdout), (self.process.stderr, self.stderr))
        ]
        for reader in self._readers:
            reader.start()
        self.ready = self._wait_ready(ready, timeout)

    def _read(self, stream: IO[str], lines: list[str]) -> None:
        for line in stream:
            lines.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def wait_line(self, text: str, since: int, timeout: float = 30.0) -> str:
        """The first stderr line after the first ``since`` lines that contains ``text``, once the reader has it
        (the lines only grow, so none is missed; a log line may arrive after the event it tells of)."""
        deadline = time.monotonic() + timeout
        while True:
            found = next((line for line in self.stderr[since:] if text in line), None)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: no {text!r} in its log within {timeout:.0f} s: {self.output()}")
            time.sleep(0.01)

    def _wait_ready(self, ready: re.Pattern[str], timeout: float) -> re.Match[str]:
        deadline, ended = time.monotonic() + timeout, 0
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise TimeoutError(f"{self.name} did not start within {timeout:.0f} s: {self.output()}") from None
            if line is None:
                ended += 1
                if ended == len(self._readers):
                    self.process.wait(timeout=10)
                    raise RuntimeError(f"{self.name} exited ({self.process.returncode}): {self.output()}")
            elif match := ready.search(line):
                return match

    def output(self, lines: int = 40) -> str:
        """The last lines it printed (for error messages)."""
        return "".join((self.stdout + self.stderr)[-lines:])

    def wait(self, timeout: float) -> int:
        """The exit code, once the process has ended and all its output has been read."""
        code = self.process.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=timeout)
        return code

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within 15 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def __enter__(self) -> ChildServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServeProcess(ChildServer):
    """``assistant serve --port 0 ARGS`` with its own ASSISTANT_HOME; ``url`` is its /v1 base."""

    def __init__(self, home: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 90.0) -> None:
        environment = os.environ | {"ASSISTANT_HOME": str(home), "PYTHONUNBUFFERED": "1"} | (env or {})
        environment.setdefault("ASSISTANT_THREADS", "1")
        environment.setdefault("ASSISTANT_N_CTX", "2048")
        self.home = home
        super().__init__(
            [sys.executable, "-m", "assistant", "serve", "--port", "0", *args],
            READY,
            environment,
            timeout,
            "assistant serve",
        )
        self.url = self.ready.group(1)
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])

    def get(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(self.url.removesuffix("/v1") + path, timeout=30) as response:
            return json.loads(response.read())

    def health(self) -> dict[str, Any]:
        return self.get("/health")

    def wait_health(self, predicate: Any, what: str, timeout: float = 60.0) -> dict[str, Any]:
        """Poll /health until ``predicate(health)`` holds (give it a counter that only grows)."""
        deadline = time.monotonic() + timeout
        while not predicate(health := self.health()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout:.0f} s for {what}; last health {health}")
            time.sleep(0.005)
        return health
