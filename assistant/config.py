"""Settings: a TOML file in the config dir, overridden by environment variables.

Two views: :func:`load_file` is the file alone (over the defaults), :func:`load` the effective settings
(the file, then ``ASSISTANT_*`` environment overrides). :func:`save` writes back only file values: what
changed since the file was read, into the file as it is now (through tomlkit, so the user's comments,
key order and other keys stay); an environment override is never written unless the user changed it.

``ASSISTANT_HOME`` puts config, database and models under one folder.

tomlkit is imported only where the file is written (deliberately: every command reads the settings, few save them).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs

from assistant import AssistantError
from assistant.storage.files import atomic_write_text

if TYPE_CHECKING:
    from tomlkit import TOMLDocument
    from tomlkit.items import Table

APP_NAME = "assistant"


class ConfigError(AssistantError):
    """The config file is malformed or holds a bad value."""


@dataclass
class ModelSettings:
    default: str = ""  # registry name; empty means the embedded default student
    n_ctx: int = 4096
    threads: int = 0  # threads evaluating prompts; 0 means the number of physical cores
    decode_threads: int = 0  # threads generating one token at a time; 0 means auto (one: see README, Performance)
    speculate: bool = True  # prompt-lookup drafting (same answers, greedy or seeded; faster when copying)


@dataclass
class GenerationSettings:
    temperature: float = 0.7
    max_tokens: int = 1024
    system: str = ""


@dataclass
class TeacherSettings:
    url: str = ""
    model: str = ""
    api_key_env: str = ""
    api_key_file: str = ""
    timeout_s: float = 60.0
    connect_timeout_s: float = 5.0
    retries: int = 2


@dataclass
class EscalationSettings:
    policy: str = "never"  # never | ask | auto
    context_turns: int = 0  # previous turns sent along with the question
    min_confidence: float = 0.85  # escalate a factual question when the draft's confidence is below this
    draft_tokens: int = 8
    min_factual: float = 0.5  # the router's question-kind score above which a question counts as factual


@dataclass
class UISettings:
    theme: str = "textual-dark"
    keys: dict[str, str] = field(default_factory=dict)


@dataclass
class Config:
    model: ModelSettings = field(default_factory=ModelSettings)
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    teacher: TeacherSettings = field(default_factory=TeacherSettings)
    escalation: EscalationSettings = field(default_factory=EscalationSettings)
    ui: UISettings = field(default_factory=UISettings)
    path: Path | None = None  # the file it was read from
    # "section.key" -> value: what the file held when read (or last saved), and what the environment overrode
    file_values: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    overrides: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def values(self) -> dict[str, Any]:
        """Every setting as ``{"section.key": value}``."""
        return {f"{s}.{f.name}": getattr(getattr(self, s), f.name) for s in SECTIONS for f in fields(SECTIONS[s])}


SECTIONS = {
    "model": ModelSettings,
    "generation": GenerationSettings,
    "teacher": TeacherSettings,
    "escalation": EscalationSettings,
    "ui": UISettings,
}

ENV_OVERRIDES = {
    "ASSISTANT_MODEL": ("model", "default"),
    "ASSISTANT_N_CTX": ("model", "n_ctx"),
    "ASSISTANT_THREADS": ("model", "threads"),
    "ASSISTANT_DECODE_THREADS": ("model", "decode_threads"),
    "ASSISTANT_SPECULATE": ("model", "speculate"),
    "ASSISTANT_TEMPERATURE": ("generation", "temperature"),
    "ASSISTANT_MAX_TOKENS": ("generation", "max_tokens"),
    "ASSISTANT_ESCALATION": ("escalation", "policy"),
    "ASSISTANT_TEACHER_URL": ("teacher", "url"),
    "ASSISTANT_TEACHER_MODEL": ("teacher", "model"),
}

POLICIES = ("never", "ask", "auto")


def home() -> Path | None:
    value = os.environ.get("ASSISTANT_HOME")
    return Path(value).expanduser() if value else None


def config_dir() -> Path:
    if (h := home()) is not None:
        return h
    return Path(platformdirs.user_config_dir(APP_NAME))


def data_dir() -> Path:
    if (h := home()) is not None:
        return h
    return Path(platformdirs.user_data_dir(APP_NAME))


def config_path() -> Path:
    return Path(os.environ.get("ASSISTANT_CONFIG") or config_dir() / "config.toml")


def database_path() -> Path:
    return data_dir() / "assistant.db"


def models_dir() -> Path:
    return data_dir() / "models"


def _coerce(value: Any, expected: type, where: str) -> Any:
    """Check a value against a dataclass field's type; ints are accepted for floats."""
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is dict:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(f"{where}: expected a table of strings")
        return value
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {expected.__name__}, got {type(value).__name__} {value!r}")
    return value


def _field_type(section_cls: type, name: str) -> type:
    hints = {"str": str, "int": int, "float": float, "bool": bool, "dict[str, str]": dict}
    for f in fields(section_cls):
        if f.name == name:
            return hints[f.type if isinstance(f.type, str) else f.type.__name__]
    raise KeyError(name)


def _apply(config: Config, section: str, key: str, value: Any, where: str) -> None:
    section_cls = SECTIONS[section]
    try:
        expected = _field_type(section_cls, key)
    except KeyError:
        known = ", ".join(f.name for f in fields(section_cls))
        raise ConfigError(f"{where}: unknown key (known keys in [{section}]: {known})") from None
    setattr(getattr(config, section), key, _coerce(value, expected, where))


def validate(config: Config, source: str) -> None:
    """Every setting within its range; one line naming ``source`` (a file, the environment, the command line)."""
    if config.escalation.policy not in POLICIES:
        raise ConfigError(
            f"{source}: escalation.policy must be one of {', '.join(POLICIES)}, got {config.escalation.policy!r}"
        )
    escalation = config.escalation
    if not (0.0 <= escalation.min_confidence <= 1.0 and 0.0 <= escalation.min_factual <= 1.0):
        raise ConfigError(f"{source}: escalation.min_confidence and escalation.min_factual must be between 0 and 1")
    if escalation.draft_tokens < 1 or escalation.context_turns < 0:
        raise ConfigError(
            f"{source}: escalation.draft_tokens must be positive and escalation.context_turns not negative"
        )
    if config.model.n_ctx < 256:
        raise ConfigError(f"{source}: model.n_ctx must be at least 256, got {config.model.n_ctx}")
    cpus = os.cpu_count() or 1
    for key in ("threads", "decode_threads"):
        if not 0 <= (value := getattr(config.model, key)) <= cpus:
            raise ConfigError(
                f"{source}: model.{key} must be 0 (auto) or 1 to {cpus} (this machine's CPUs), got {value}"
            )
    if not 0.0 <= config.generation.temperature <= 5.0:
        raise ConfigError(f"{source}: generation.temperature must be between 0 and 5")
    if config.generation.max_tokens < 1:
        raise ConfigError(f"{source}: generation.max_tokens must be positive")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def load_file(path: Path | None = None) -> Config:
    """The settings as the file says (defaults for what it leaves out), without environment overrides."""
    path = path or config_path()
    config = Config(path=path)
    named = os.environ.get("ASSISTANT_CONFIG")
    if named and path == Path(named) and not path.exists():  # a typo there would otherwise go unnoticed
        raise ConfigError(f"{path}: no such config file (named by ASSISTANT_CONFIG)")
    if path.exists():
        for section, table in _read_toml(path).items():
            if section not in SECTIONS:
                raise ConfigError(f"{path}: unknown section [{section}] (known: {', '.join(SECTIONS)})")
            if not isinstance(table, dict):
                raise ConfigError(f"{path}: [{section}] must be a table")
            for key, value in table.items():
                _apply(config, section, key, value, f"{path}: {section}.{key}")
        validate(config, str(path))
    config.file_values = config.values()
    return config


def load(path: Path | None = None) -> Config:
    """The effective settings: the file (if any), then environment overrides (remembered in ``overrides``)."""
    config = load_file(path)
    for env, (section, key) in ENV_OVERRIDES.items():
        expected = _field_type(SECTIONS[section], key)
        if (raw := os.environ.get(env)) is not None and (raw or expected is str):  # VAR= unsets a number
            try:
                value = _env_bool(raw) if expected is bool else expected(raw) if expected is not str else raw
            except ValueError:
                raise ConfigError(f"environment {env}: expected {expected.__name__}, got {raw!r}") from None
            setattr(getattr(config, section), key, value)
            config.overrides[f"{section}.{key}"] = value
    validate(config, "environment")
    return config


def _env_bool(raw: str) -> bool:
    """1/true/yes/on or 0/false/no/off, any case."""
    words = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}
    if raw.strip().lower() not in words:
        raise ValueError(raw)
    return words[raw.strip().lower()]


def changes(config: Config) -> dict[str, Any]:
    """The file values to write: settings changed since the file was read, environment overrides left out.

    A Config built in code (never read from a file) counts as changed wherever it differs from the defaults.
    """
    baseline = config.file_values or Config().values()
    return {
        key: value
        for key, value in config.values().items()
        if value != baseline[key] and not (key in config.overrides and value == config.overrides[key])
    }


def save(config: Config, path: Path | None = None) -> Path:
    """Write the changed file values into the file as it is now, atomically; comments and key order stay."""
    import tomlkit  # only when saving: keeps `assistant ask` start-up lean

    path = path or config.path or config_path()
    pending = changes(config)
    sections: dict[str, dict[str, Any]] = {}
    for dotted, value in pending.items():
        section, key = dotted.split(".")
        sections.setdefault(section, {})[key] = _toml_item(value)
    if pending or not path.exists():
        atomic_write_text(path, tomlkit.dumps(_with_values(_read_document(path), sections)))
    config.file_values = (config.file_values or Config().values()) | pending
    return path


def _with_values(document: TOMLDocument, sections: dict[str, dict[str, Any]]) -> TOMLDocument:
    """``document`` with the values set: a key in place, a new key after its table's last key (so the
    blank lines and comments leading into the next table stay there), a new table at the end."""
    import tomlkit
    from tomlkit.items import Table

    result = tomlkit.TOMLDocument(parsed=True)  # as parsed: tomlkit adds no blank lines of its own
    for key, item in document.body:
        if key is not None and isinstance(item, Table) and key.key in sections:
            item = _table_with_values(item, sections.pop(key.key))
        result.append(key, item)
    for section, values in sections.items():
        if result.body and not result.as_string().endswith("\n\n"):
            result.append(None, tomlkit.nl())
        table = tomlkit.table()
        table.update(values)
        result.append(section, table)
    return result


def _table_with_values(table: Table, values: dict[str, Any]) -> Table:
    from tomlkit.container import Container
    from tomlkit.items import Table

    new = {key: value for key, value in values.items() if key not in table}
    for key in values.keys() - new.keys():
        table[key] = values[key]
    if not new or table.is_super_table():
        table.update(new)
        return table
    body = table.value.body
    end = max((i + 1 for i, (name, _) in enumerate(body) if name is not None), default=0)
    container = Container(parsed=True)
    for name, item in body[:end]:
        container.append(name, item)
    for key, value in new.items():
        container.append(key, value)
    for name, item in body[end:]:
        container.append(name, item)
    return Table(container, table.trivia, table.is_aot_element(), name=table.name, display_name=table.display_name)


def _read_document(path: Path) -> TOMLDocument:
    import tomlkit

    if not path.exists():
        return tomlkit.document()
    try:
        return tomlkit.parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    except tomlkit.exceptions.ParseError as exc:
        raise ConfigError(f"{path}: invalid TOML, not overwritten: {exc}") from None


def _toml_item(value: Any) -> Any:
    """Tables of strings (``[ui] keys``) stay inline, as a user would write them."""
    if isinstance(value, dict):
        import tomlkit

        table = tomlkit.inline_table()
        table.update(value)
        return table
    return value
