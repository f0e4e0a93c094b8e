"""`assistant serve` as a real subprocess on a free loopback port (tests/test_server.py, bench_server)."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent  # the repository root
READY = re.compile(r"listening on (http://\S+/v1)")


class ServeProcess:
    """Starts ``assistant serve --port 0 ARGS`` and waits (bounded) for its "listening on URL" line."""

    def __init__(self, home: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 90.0) -> None:
        environment = os.environ | {"ASSISTANT_HOME": str(home), "PYTHONUNBUFFERED": "1"} | (env or {})
        environment.setdefault("ASSISTANT_THREADS", "1")
        environment.setdefault("ASSISTANT_N_CTX", "2048")
        self.home = home
        self.process = subprocess.Popen(
            [sys.executable, "-m", "assistant", "serve", "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment, cwd=REPO,
        )
        self.stderr: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(self.process.stdout, self._lines), daemon=True).start()
        self._collector = threading.Thread(target=self._collect, daemon=True)
        self._collector.start()
        self.url = self._wait_ready(timeout)
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])

    @staticmethod
    def _pump(stream: Any, lines: queue.Queue[str | None]) -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    def _collect(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)

    def _wait_ready(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise TimeoutError(f"assistant serve did not start within {timeout:.0f} s: {''.join(self.stderr)}")
            if line is None:
                self.process.wait(timeout=10)
                raise RuntimeError(f"assistant serve exited ({self.process.returncode}): {''.join(self.stderr)}")
            if match := READY.search(line):
                return match.group(1)

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

    def wait(self, timeout: float) -> int:
        """The exit code, once the process has ended and all its stderr has been read."""
        code = self.process.wait(timeout=timeout)
        self._collector.join(timeout=timeout)
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
