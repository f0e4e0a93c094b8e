"""`models pull` against a real HTTP server on 127.0.0.1 that speaks the Hub's download protocol."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from assistant.cli.main import main
from assistant.config import models_dir
from assistant.models.pull import PullError, pull
from assistant.models.registry import Registry
from assistant.storage.store import Store

REPO = "someone/SmolLM2-135M-Instruct-GGUF"
FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Hub:
    """What the local Hub serves and what it saw."""

    files: dict[tuple[str, str], bytes] = field(default_factory=dict)
    etags: dict[tuple[str, str], str] = field(default_factory=dict)  # sha256 advertised, if not the real one
    drop_after: int = 0  # first GET: send this many bytes, then drop the connection
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, Range header)
    url: str = ""


def _handler(hub: Hub) -> type[BaseHTTPRequestHandler]:
    route = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<file>.+)$")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def _lookup(self) -> tuple[tuple[str, str], bytes] | None:
            hub.requests.append((self.command, self.path, self.headers.get("Range", "")))
            match = route.match(self.path)
            key = (match["repo"], match["file"]) if match else ("", "")
            if key not in hub.files:
                code = "RepoNotFound" if not any(r == key[0] for r, _ in hub.files) else "EntryNotFound"
                self.send_response(404)
                self.send_header("X-Error-Code", code)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            return key, hub.files[key]

        def _headers(self, key: tuple[str, str], data: bytes) -> None:
            sha = hub.etags.get(key) or hashlib.sha256(data).hexdigest()
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{sha}"')
            self.send_header("X-Linked-Etag", f'"{sha}"')
            self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("Accept-Ranges", "bytes")

        def do_HEAD(self) -> None:  # noqa: N802
            if found := self._lookup():
                key, data = found
                self.send_response(200)
                self._headers(key, data)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()

        def do_GET(self) -> None:  # noqa: N802
            if not (found := self._lookup()):
                return
            key, data = found
            start = 0
            if match := re.match(r"bytes=(\d+)-$", self.headers.get("Range", "")):
                start = int(match[1])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self._headers(key, data)
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            body = memoryview(data)[start:]
            if hub.drop_after:
                cut, hub.drop_after = hub.drop_after, 0
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)  # mid-file: the client sees an incomplete body
                return
            self.wfile.write(body)

    return Handler


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, smollm_path: Path) -> Iterator[Hub]:
    """A local Hub serving the real SmolLM2 GGUF, with the hub client switched online for it."""
    import huggingface_hub.constants as constants

    state = Hub(files={(REPO, FILE): smollm_path.read_bytes()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("HF_ENDPOINT", state.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # read once at import; conftest set it
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def registry(assistant_home: Path) -> Registry:
    from assistant.config import database_path

    return Registry(Store(database_path()))


def test_full_download_is_verified_and_registered(hub: Hub, registry: Registry, smollm_path: Path) -> None:
    entry = pull(registry, REPO, FILE, name="smol-pulled")
    path = Path(entry["path"])
    assert path.is_relative_to(models_dir())
    assert path.read_bytes() == hub.files[(REPO, FILE)]
    assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert entry["origin"] == "pulled" and entry["architecture"] == "llama"
    assert registry.resolve("smol-pulled") == path
    assert [m for m, _, _ in hub.requests] == ["HEAD", "GET"]


def test_dropped_connection_resumes_with_range(hub: Hub, registry: Registry) -> None:
    data = hub.files[(REPO, FILE)]
    hub.drop_after = len(data) // 3
    entry = pull(registry, REPO, FILE)
    assert Path(entry["path"]).read_bytes() == data
    gets = [r for r in hub.requests if r[0] == "GET"]
    assert len(gets) == 2
    resumed_at = int(re.match(r"bytes=(\d+)-", gets[1][2])[1])  # type: ignore[index]
    assert 0 < resumed_at <= len(data) // 3  # continued from what it had, not from zero


def test_checksum_mismatch_against_catalog_deletes_the_file(hub: Hub, registry: Registry) -> None:
    with pytest.raises(PullError, match="checksum mismatch"):
        pull(registry, REPO, FILE, name="smol", sha256="0" * 64)
    assert registry.get("smol") is None
    assert not list(models_dir().rglob("*.gguf"))


def test_corrupted_transfer_caught_by_the_hubs_own_checksum(hub: Hub, registry: Registry) -> None:
    data = bytearray(hub.files[(REPO, FILE)])
    hub.etags[(REPO, FILE)] = hashlib.sha256(data).hexdigest()  # the Hub advertises the true checksum ...
    data[len(data) // 2] ^= 0xFF  # ... but a flipped bit arrives
    hub.files[(REPO, FILE)] = bytes(data)
    with pytest.raises(PullError, match="checksum mismatch"):
        pull(registry, REPO, FILE)
    assert not list(models_dir().rglob("*.gguf"))


def test_a_non_gguf_download_is_refused(hub: Hub, registry: Registry) -> None:
    hub.files[(REPO, "notes.gguf")] = b"<html>not a model</html>" * 10
    with pytest.raises(PullError, match="not a usable model"):
        pull(registry, REPO, "notes.gguf")
    assert registry.entries() == []


def test_missing_repo_and_file(hub: Hub, registry: Registry) -> None:
    with pytest.raises(PullError, match="not found"):
        pull(registry, REPO, "nope.gguf")
    with pytest.raises(PullError, match="repository .* not found"):
        pull(registry, "nobody/nothing", FILE)


def test_offline_refuses_with_import_hint(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PullError, match="offline.*models import"):
        pull(registry, REPO, FILE)


def test_connection_refused_fails_fast(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    import huggingface_hub.constants as constants

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(PullError, match="cannot reach .*models import"):
        pull(registry, REPO, FILE)


@pytest.mark.parametrize(
    ("repo", "filename"),
    [("a/b", "../../evil.gguf"), ("a/b", "/etc/passwd.gguf"), ("../x", FILE), ("a/b/c", FILE), ("a/b", "w.bin")],
)
def test_bad_targets_are_refused_before_any_request(registry: Registry, repo: str, filename: str) -> None:
    with pytest.raises(PullError, match="invalid|not a .gguf"):
        pull(registry, repo, filename)


def test_cli_pull_and_catalog_pull(hub: Hub, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "pull", REPO, FILE, "--name", "from-cli"]) == 0
    assert "pulled from-cli" in capsys.readouterr().out
    assert main(["models", "pull", "smollm2-135m"]) == 1  # packaged: nothing to download
    assert main(["models", "pull", "no-such-model"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "ships with assistant" in err[0] and "not in the model catalog" in err[1]
