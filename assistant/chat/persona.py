"""Personas: a named bundle of a system prompt, context files, a base model and generation settings.

Each persona is one JSON file ``<data dir>/personas/NAME.json`` (written atomically) holding the
texts themselves, so a persona keeps working when its source files move. A persona runs *prompted*
(its system prompt and context go before every conversation) until it is distilled: then
``student`` names its own model in the registry, which answers the same way with no prompt, and
``student_fingerprint`` records the prompt it learnt (:meth:`Persona.fingerprint`). Once the system prompt or
the context changes the student is *stale*: the persona runs prompted again until it is distilled again.
:meth:`Persona.runtime_model` and :meth:`Persona.runtime_system` are the one place that decides, for the CLI,
the chat UI and the server.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import select
import stat
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from assistant import AssistantError
from assistant.config import data_dir
from assistant.models.schema import SchemaError, parse_schema
from assistant.storage.files import atomic_write_text

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
RESERVE_TOKENS = 256  # room a prompted persona must leave in the window for the conversation itself
FIFO_WAIT_S = 10.0  # how long a context read from a FIFO waits for its first byte


class PersonaError(AssistantError):
    """A persona is missing, malformed or cannot be used as asked."""


@dataclass
class ContextFile:
    name: str  # the source file's name, shown as the section heading
    text: str


@dataclass
class Persona:
    name: str
    system: str = ""
    contexts: list[ContextFile] = field(default_factory=list)
    model: str = ""  # base model (registry name or GGUF path); empty = the configured default
    temperature: float | None = None
    max_tokens: int | None = None
    student: str = ""  # the distilled student's registry name; empty = runs prompted
    created: str = ""
    schema: dict[str, Any] | None = None  # default JSON Schema of every answer (as `ask --schema`)
    student_fingerprint: str = ""  # the fingerprint of the prompt the student learnt ('' = not known: taken as current)
    student_verdict: str = ""  # its evaluation's one line ("keeps 93 % [85–100] of the prompted persona …")
    docs: list[str] = field(default_factory=list)  # files and folders (absolute) every answer is grounded in

    @property
    def state(self) -> str:
        """``prompted`` (no student), ``distilled`` (its student answers) or ``stale`` (the prompt changed since
        the student was distilled: it runs prompted)."""
        if not self.student:
            return "prompted"
        return "stale" if self.student_fingerprint not in ("", self.fingerprint()) else "distilled"

    @property
    def distilled(self) -> bool:
        """Whether its student answers (distilled, and not stale)."""
        return self.state == "distilled"

    def fingerprint(self) -> str:
        """sha256 of what a student learns: the prompt a prompted persona runs with (its system prompt and contexts)
        and the document paths its questions came from (adding or dropping one makes the student stale; a file
        edited inside a folder does not: the index, not the persona, knows contents)."""
        learnt = self.context_text() + ("\n\n## documents\n" + "\n".join(sorted(self.docs)) if self.docs else "")
        return hashlib.sha256(learnt.encode("utf-8")).hexdigest()

    def stale_note(self) -> str:
        """One line telling a stale persona's user why it runs prompted, and how to fix it."""
        return (
            f"persona {self.name!r} is stale: its system prompt, context or documents changed since its student "
            f"{self.student!r} was distilled, so it answers prompted on {self.model or 'the default model'}; "
            f"run `assistant distill persona {self.name}` to distil it again"
        )

    def context_text(self) -> str:
        """The full prompt a prompted persona runs with: the system prompt, then each context file."""
        parts = [self.system.strip()] if self.system.strip() else []
        parts += [f"## {c.name}\n\n{c.text.strip()}" for c in self.contexts]
        return "\n\n".join(parts)

    def runtime_model(self) -> str:
        """The model a session with this persona loads: its student once distilled (and not stale), else its base
        model."""
        return self.student if self.distilled else self.model

    def runtime_system(self) -> str:
        """The system prompt a session uses: none for a distilled persona (the student learnt it)."""
        return "" if self.distilled else self.context_text()

    def adopt(self, student: str, fingerprint: str, verdict: str = "") -> None:
        """Answer with ``student``, distilled from the prompt whose fingerprint is ``fingerprint`` (``verdict``: its
        evaluation's one line)."""
        self.student, self.student_fingerprint, self.student_verdict = student, fingerprint, verdict

    def forget_student(self) -> None:
        """Run prompted again."""
        self.student, self.student_fingerprint, self.student_verdict = "", "", ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def validate_name(name: str) -> str:
    """A persona name doubles as a file name and a model name: letters, digits, '.', '-', '_'."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise PersonaError(
            f"invalid persona name {name!r}: use up to 64 letters, digits, '.', '-', '_' (no '/' or '..')"
        )
    return name


def folder() -> Path:
    return data_dir() / "personas"


def path_of(name: str) -> Path:
    return folder() / f"{validate_name(name)}.json"


def read_text_file(path: Path | str, what: str) -> str:
    """A UTF-8 text file's content; one clear error if it is missing, unreadable, too big, binary or empty."""
    path = Path(path).expanduser()
    data = _read_capped(path, what)
    if b"\0" in data[:8192]:
        raise PersonaError(f"{path}: the {what} file is binary, not text")
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise PersonaError(f"{path}: the {what} file is not UTF-8 text") from None
    if not text.strip():
        raise PersonaError(f"{path}: the {what} file is empty")
    return text


def _read_capped(path: Path, what: str) -> bytes:
    """At most ``MAX_FILE_BYTES`` (+1, to tell) of a regular file or a pipe, as ``ask -f`` reads; a device or a
    folder is refused unread, and a FIFO nobody writes to is given up after ``FIFO_WAIT_S`` (never a hang)."""
    from assistant.chat.attach import MAX_FILE_BYTES  # deliberately lazy: attach loads the store, off `--help`

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # open() of a FIFO would wait for a writer
    except FileNotFoundError:
        raise PersonaError(f"{path}: no such {what} file") from None
    except OSError as exc:
        raise PersonaError(f"{path}: cannot read the {what} file: {exc.strerror or exc}") from None
    try:
        data = _read_fd(fd, path, what, MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise PersonaError(f"{path}: cannot read the {what} file: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise PersonaError(f"{path}: the {what} file is larger than {MAX_FILE_BYTES // 2**20} MiB")
    return data


def _read_fd(fd: int, path: Path, what: str, limit: int) -> bytes:
    mode = os.fstat(fd).st_mode
    if stat.S_ISDIR(mode):
        raise PersonaError(f"{path}: is a folder, not a {what} file")
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
        raise PersonaError(f"{path}: is a device, not a text file")
    if stat.S_ISFIFO(mode):
        if not select.select([fd], [], [], FIFO_WAIT_S)[0]:
            raise PersonaError(f"{path}: nothing was written to this pipe in {FIFO_WAIT_S:.0f} s")
        os.set_blocking(fd, True)
    with open(fd, "rb", closefd=False) as handle:
        return handle.read(limit)


def from_dict(data: Any, where: str) -> Persona:
    """A persona from its JSON form, checked field by field."""
    if not isinstance(data, dict):
        raise PersonaError(f"{where}: a persona must be a JSON object")
    known = {f.name for f in fields(Persona)}
    if unknown := sorted(set(data) - known):
        raise PersonaError(f"{where}: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    try:
        contexts = [ContextFile(str(c["name"]), str(c["text"])) for c in data.get("contexts", [])]
    except (TypeError, KeyError):
        raise PersonaError(f'{where}: each context needs a "name" and a "text"') from None
    persona = Persona(**{**data, "contexts": contexts})
    validate_name(persona.name)
    for key in ("system", "model", "student", "created", "student_fingerprint", "student_verdict"):
        if not isinstance(getattr(persona, key), str):
            raise PersonaError(f"{where}: {key} must be a string")
    if persona.temperature is not None and (
        not isinstance(persona.temperature, (int, float)) or not 0.0 <= persona.temperature <= 5.0
    ):
        raise PersonaError(f"{where}: temperature must be a number between 0 and 5")
    if persona.max_tokens is not None and (not isinstance(persona.max_tokens, int) or persona.max_tokens < 1):
        raise PersonaError(f"{where}: max_tokens must be a positive integer")
    if persona.schema is not None:
        try:
            persona.schema = parse_schema(json.dumps(persona.schema)) if isinstance(persona.schema, dict) else None
        except SchemaError as exc:
            raise PersonaError(f"{where}: schema: {exc}") from None
        if persona.schema is None:
            raise PersonaError(f"{where}: schema must be a JSON Schema object")
    if not isinstance(persona.docs, list) or not all(isinstance(d, str) and d for d in persona.docs):
        raise PersonaError(f"{where}: docs must be a list of paths")
    if not persona.context_text() and not persona.student and not persona.docs:
        raise PersonaError(f"{where}: a persona needs a system prompt or a context file (or documents: --docs)")
    return persona


def load(name: str) -> Persona:
    path = path_of(name)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        known = ", ".join(names()) or "none yet; see `assistant persona add`"
        raise PersonaError(f"no persona named {name!r} (known: {known})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PersonaError(f"{path}: cannot read the persona: {exc}") from None
    persona = from_dict(data, str(path))
    if persona.name != name:
        raise PersonaError(f"{path}: holds persona {persona.name!r}, not {name!r}")
    return persona


def save(persona: Persona) -> Path:
    """Write (or replace) the persona's file atomically."""
    from_dict(persona.as_dict(), f"persona {persona.name!r}")  # never write what could not be read back
    path = path_of(persona.name)
    try:
        atomic_write_text(path, json.dumps(persona.as_dict(), indent=2, ensure_ascii=False) + "\n")
    except OSError as exc:
        raise PersonaError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def names() -> list[str]:
    where = folder()
    return sorted(p.stem for p in where.glob("*.json") if NAME_PATTERN.fullmatch(p.stem)) if where.is_dir() else []


def all_personas() -> list[Persona]:
    """Every readable persona (a damaged file is skipped here; ``load`` names its problem)."""
    result = []
    for name in names():
        try:
            result.append(load(name))
        except PersonaError:
            continue
    return result


def new(
    name: str,
    system_file: str | None,
    context_files: list[str],
    model: str = "",
    temperature: float | None = None,
    max_tokens: int | None = None,
    docs: list[str] | None = None,
) -> Persona:
    """A new persona from files (not saved yet); refuses a taken name, or one differing only in case."""
    validate_name(name)
    if path_of(name).exists():
        raise PersonaError(f"a persona named {name!r} already exists: `assistant persona edit {name}` changes it")
    if twin := same_name(name, names()):
        raise PersonaError(
            f"a persona named {twin!r} already exists; {name!r} differs only in case "
            "(one file on macOS and Windows): pick another name"
        )
    persona = Persona(
        name=name,
        system=read_text_file(system_file, "system prompt") if system_file else "",
        contexts=read_contexts(context_files),
        model=model,
        temperature=temperature,
        max_tokens=max_tokens,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        docs=doc_paths(docs or []),
    )
    return from_dict(persona.as_dict(), f"persona {name!r}")


def same_name(name: str, taken: Iterable[str]) -> str | None:
    """The name in ``taken`` that equals ``name`` ignoring case, if any."""
    return next((t for t in taken if t.lower() == name.lower()), None)


def refuse_model_name(name: str, model_names: Iterable[str]) -> None:
    """A persona is served under its name (GET /v1/models): it must not hide a model's name, in any case."""
    if model := same_name(name, model_names):
        raise PersonaError(
            f"{name!r} is the name of the model {model!r}: a persona named so would answer for that model "
            "(e.g. to `assistant serve` clients); pick another name"
        )


def read_contexts(paths: list[str], existing: Iterable[ContextFile] = ()) -> list[ContextFile]:
    """The context files at ``paths``; a file given twice, or already in ``existing``, is refused."""
    before, added = list(existing), []
    for path in paths:
        context = ContextFile(Path(path).name, read_text_file(path, "context"))
        if context in before:
            raise PersonaError(f"{path}: the persona already has this context file (same name and text)")
        if context in added:
            raise PersonaError(f"{path}: this context file is given twice; give it once")
        added.append(context)
    return added


def doc_paths(paths: list[str]) -> list[str]:
    """The persona's documents as absolute paths (so it works from any folder); a missing one is refused."""
    found = []
    for path in paths:
        where = Path(path).expanduser().absolute()
        if not where.exists():
            raise PersonaError(f"{path}: no such file or folder for the persona's documents")
        if str(where) not in found:
            found.append(str(where))
    return found


def remove(name: str) -> None:
    path = path_of(name)
    if not path.exists():
        raise PersonaError(f"no persona named {name!r}")
    path.unlink()


# -- fitting the window
def check_fits(persona: Persona, tokens: int, n_ctx: int, reserve: int = RESERVE_TOKENS) -> None:
    """Refuse a prompted persona whose context leaves less than ``reserve`` tokens of an ``n_ctx`` window."""
    if tokens + reserve > n_ctx:
        raise PersonaError(
            f"persona {persona.name!r}: its context needs {tokens} tokens (+{reserve} for the conversation) "
            f"but the model's window has {n_ctx}; shorten the context or raise model.n_ctx"
        )


def count_tokens(model_path: Path, text: str) -> int:
    """Tokens ``text`` takes as a system message, with the model's own tokenizer (vocabulary only: quick)."""
    import llama_cpp  # deliberately lazy: llama.cpp loads only when a token count is needed
    from llama_cpp._utils import suppress_stdout_stderr

    with suppress_stdout_stderr(disable=False):  # llama.cpp warns about the context a vocabulary-only load never uses
        llm = llama_cpp.Llama(str(model_path), vocab_only=True, verbose=False)
    try:
        return len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))
    finally:
        llm.close()
