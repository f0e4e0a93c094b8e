"""`assistant models pull`: download a GGUF from the Hugging Face Hub into the models folder.

The only part of assistant that downloads weights, and only when the user asks. Uses
``huggingface_hub.hf_hub_download`` (progress bar with size, rate and ETA; a dropped
connection is resumed with an HTTP Range request), then checks the sha256 against the
catalog or the Hub's own LFS checksum, validates the GGUF header and registers the file.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

from assistant import AssistantError
from assistant.config import models_dir
from assistant.models.gguf_info import ModelFileError, read_info, sha256_file
from assistant.models.registry import (
    ModelEntry,
    Registry,
    catalog_entry,
    is_packaged,
    name_for_file,
    validate_name,
)

DEFAULT_ENDPOINT = "https://huggingface.co"
REPO_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
IMPORT_HINT = (
    "to add a model without network, copy its .gguf file to this machine and run `assistant models import PATH`"
)


class PullError(AssistantError):
    """A download was refused or failed."""


def endpoint() -> str:
    """The Hub address: ``HF_ENDPOINT`` read now (huggingface_hub reads it only once, at import)."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def offline() -> bool:
    """Whether the user switched the Hub off (``HF_HUB_OFFLINE``, as huggingface_hub understands it)."""
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        return True
    constants = sys.modules.get("huggingface_hub.constants")
    return bool(constants and constants.HF_HUB_OFFLINE)


def check_target(repo: str, filename: str) -> None:
    """A repo id ``owner/name`` and a relative ``.gguf`` path that cannot climb out of the models folder."""
    if not REPO_PATTERN.match(repo) or ".." in repo:
        raise PullError(f"invalid repository {repo!r}: expected owner/name, e.g. bartowski/Llama-3.2-1B-Instruct-GGUF")
    parts = filename.replace("\\", "/").split("/")
    if filename.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise PullError(f"invalid file name {filename!r}: a path inside the repository, without '..'")
    if not filename.endswith(".gguf"):
        raise PullError(f"{filename!r} is not a .gguf file; only GGUF models can be pulled")


def _reachable(url: str, timeout: float = 5.0) -> None:
    """Fail fast (instead of huggingface_hub's ~25 s of retries) when the Hub cannot be reached."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname or "", port), timeout=timeout).close()
    except OSError as exc:
        raise PullError(f"cannot reach {url} ({exc.strerror or exc}): offline? {IMPORT_HINT}") from None


def pull(
    registry: Registry,
    repo: str,
    filename: str,
    *,
    name: str | None = None,
    sha256: str = "",
    revision: str | None = None,
) -> ModelEntry:
    """Download ``filename`` from ``repo``, verify and validate it, and register it; returns the entry."""
    check_target(repo, filename)
    name = validate_name(name) if name else name_for_file(filename)
    if is_packaged(name) or registry.get(name):
        raise PullError(f"a model named {name!r} already exists; `assistant models rm {name}` first")
    if offline():
        raise PullError(f"offline mode is on (HF_HUB_OFFLINE): nothing was downloaded; {IMPORT_HINT}")
    hub = endpoint()
    _reachable(hub)
    folder = models_dir() / "hub" / repo.replace("/", "--")
    path = _download(repo, filename, revision, folder, hub)
    expected = sha256.lower() or _hub_sha256(folder, filename)
    actual = sha256_file(path)
    if expected and actual != expected:
        _discard(folder, filename)
        raise PullError(
            f"checksum mismatch for {repo}/{filename}: expected {expected[:16]}…, got {actual[:16]}…; "
            "the download was deleted, try again"
        )
    try:
        info = read_info(path)
    except ModelFileError as exc:
        _discard(folder, filename)
        raise PullError(f"the downloaded file is not a usable model and was deleted: {exc}") from None
    return registry.add(name, path, "pulled", info, actual)


def pull_catalog(registry: Registry, catalog_name: str) -> ModelEntry:
    """`models pull NAME`: a model from the catalog, checked against its recorded sha256."""
    entry = catalog_entry(catalog_name)
    if entry.package or is_packaged(entry.name):
        raise PullError(f"{entry.name!r} ships with assistant (package {entry.package}); nothing to download")
    if not entry.repo or not entry.file:
        raise PullError(f"catalog entry {entry.name!r} names no hub repository and file")
    return pull(registry, entry.repo, entry.file, name=entry.name, sha256=entry.sha256)


def _download(repo: str, filename: str, revision: str | None, folder: Path, hub: str) -> Path:
    from huggingface_hub import errors as hf  # deliberately lazy: only `models pull` loads the Hub client
    from huggingface_hub import hf_hub_download

    try:
        return Path(
            hf_hub_download(
                repo,
                filename,
                revision=revision,
                local_dir=folder,
                cache_dir=models_dir() / "hub" / ".cache",
                endpoint=hub,
            )
        )
    except hf.OfflineModeIsEnabled:
        raise PullError(f"offline mode is on (HF_HUB_OFFLINE): nothing was downloaded; {IMPORT_HINT}") from None
    except hf.GatedRepoError:
        raise PullError(f"{repo} is gated: accept its licence on the Hub and set HF_TOKEN") from None
    except hf.RepositoryNotFoundError:
        raise PullError(f"repository {repo} not found on {hub} (or it is private)") from None
    except hf.RevisionNotFoundError:
        raise PullError(f"revision {revision} not found in {repo}") from None
    except hf.RemoteEntryNotFoundError:
        raise PullError(f"{filename} not found in {repo}") from None
    except hf.LocalEntryNotFoundError:
        raise PullError(f"cannot download from {hub}: no connection; {IMPORT_HINT}") from None
    except hf.HfHubHTTPError as exc:
        raise PullError(f"the Hub refused the download: {str(exc).splitlines()[0]}") from None
    except OSError as exc:  # dropped connection beyond retries, size mismatch, disk full
        raise PullError(f"download of {repo}/{filename} failed: {str(exc).splitlines()[0]}") from None


def _hub_sha256(folder: Path, filename: str) -> str:
    """The Hub's ETag for an LFS file is its sha256; huggingface_hub records it next to the download."""
    try:
        from huggingface_hub._local_folder import read_download_metadata

        metadata = read_download_metadata(folder, filename)
    except (ImportError, OSError):
        return ""
    etag = (metadata.etag if metadata else "") or ""
    return etag if SHA256_PATTERN.match(etag) else ""


def _discard(folder: Path, filename: str) -> None:
    """Delete a bad download and huggingface_hub's record of it (so the next pull downloads again)."""
    from huggingface_hub._local_folder import get_local_download_paths

    paths = get_local_download_paths(folder, filename)
    paths.file_path.unlink(missing_ok=True)
    paths.metadata_path.unlink(missing_ok=True)
