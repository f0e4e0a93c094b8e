"""What a ``distill persona`` run records of its inputs: running it again with nothing changed does nothing, and
``--fresh`` starts over.

A run's summary (``summary.json`` in its work folder) keeps ``inputs``, one hash of everything that shapes the
student: the persona's prompt (its fingerprint), its base model's file, the recipe, the user's prompts and
evaluation tasks, the time budget. The same hash again, with the student that run made still in the models folder
and registered, means there is nothing to do. Imports no torch.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from assistant import AssistantError
from assistant.config import load as load_config
from assistant.models import registry
from distill_tools import DistillError
from distill_tools.app import Persona


def fingerprint(persona: Persona) -> str:
    """sha256 of the prompt the student learns (the assistant's ``Persona.fingerprint``: the same hash)."""
    return persona.fingerprint or hashlib.sha256(persona.context.encode("utf-8")).hexdigest()


def base_spec(persona: Persona) -> str:
    """The persona's base model as ``torch_model.load`` takes it: its own, else the configured default."""
    return persona.model or load_config().model.default or registry.DEFAULT_MODEL


def inputs_key(persona: Persona, settings: dict[str, Any], options: dict[str, str | float | None]) -> str:
    """One hash of what shapes the student (``options``: file names are hashed by content)."""
    parts = {
        "fingerprint": fingerprint(persona),
        "base": _file_id(base_spec(persona)),
        "settings": settings,
        "options": {k: _content(v) if isinstance(v, str) else v for k, v in options.items()},
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _content(spec: str) -> str:
    """A file's content hash; anything else (``bundled:tasks``) as given."""
    path = Path(spec).expanduser()
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else spec
    except OSError:
        return spec


def _file_id(spec: str) -> str:
    """The base model's file: path, size and modification time (its name alone may come to mean another file)."""
    try:
        with registry.opened() as models:
            path = models.resolve(spec).resolve()
        stat = path.stat()
    except (AssistantError, OSError):
        return spec
    return f"{path}:{stat.st_size}:{int(stat.st_mtime)}"


def previous(work: Path, name: str, key: str) -> dict[str, Any] | None:
    """The summary of the run that made ``name``'s student from the same inputs, if that student is still in place
    (its file exists and is the one registered under ``name`` as distilled); None: there is something to do."""
    try:
        summary = json.loads((work / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or summary.get("inputs") != key:
        return None
    gguf = Path(str(summary.get("gguf", "")))
    with registry.opened() as models:
        entry = models.get(name)
    if not gguf.is_file() or entry is None or entry.origin != "distilled" or Path(entry.path) != gguf:
        return None
    return summary


def unchanged(
    summary: dict[str, Any], persona: Persona, adopt: Callable[[str, str, str], None] | None
) -> dict[str, Any]:
    """Nothing to distil: the earlier run's summary, marked ``unchanged``. A persona left prompted (an earlier
    ``--keep-prompted``, ``persona edit --prompted``) is pointed at its student now, unless ``adopt`` is None."""
    adopted = adopt is not None and not persona.answers_with_student
    if adopt is not None and adopted:
        adopt(persona.name, fingerprint(persona), verdict_line(summary))
    return {
        **summary,
        "unchanged": True,
        "adopted_now": adopted,
        "persona_points_at_student": adopt is not None or persona.answers_with_student,
    }


def stamp(summary: dict[str, Any], persona: Persona, key: str) -> None:
    """Record in a finished run's summary what it distilled, from which inputs, and when."""
    summary["fingerprint"], summary["inputs"] = fingerprint(persona), key
    summary["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")


def start_over(work: Path) -> None:
    """``--fresh``: forget the cached teacher answers, the checkpoints and the last run's files."""
    try:
        shutil.rmtree(work)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise DistillError(f"--fresh: cannot remove {work}: {exc.strerror or exc}") from None


def verdict_line(summary: dict[str, Any]) -> str:
    """A run's one-line verdict (``verdict``), '' for a run made before verdicts."""
    verdict = summary.get("verdict")
    return str(verdict.get("line", "")) if isinstance(verdict, dict) else ""
