from pathlib import Path

import pytest

from assistant import config as cfg


def write(home: Path, text: str) -> Path:
    path = home / "config.toml"
    path.write_text(text)
    return path


def test_defaults_without_a_file(assistant_home: Path) -> None:
    config = cfg.load()
    assert config.escalation.policy == "never"
    assert config.model.n_ctx == 4096
    assert cfg.database_path() == assistant_home / "assistant.db"
    assert cfg.models_dir() == assistant_home / "models"


def test_file_values_and_env_overrides(assistant_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(assistant_home, '[generation]\ntemperature = 1\nsystem = "Be brief."\n[model]\nn_ctx = 1024\n')
    monkeypatch.setenv("ASSISTANT_N_CTX", "2048")
    config = cfg.load()
    assert config.generation.temperature == 1.0 and isinstance(config.generation.temperature, float)
    assert config.generation.system == "Be brief."
    assert config.model.n_ctx == 2048


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[model\nn_ctx = 1", "invalid TOML"),
        ("[model]\nn_ctx = 'big'", "model.n_ctx: expected int, got str"),
        ("[model]\ncolour = 1", "model.colour: unknown key"),
        ("[modle]\nn_ctx = 1", "unknown section [modle]"),
        ("[escalation]\npolicy = 'always'", "escalation.policy must be one of never, ask, auto"),
        ("[generation]\ntemperature = true", "generation.temperature: expected float, got bool"),
        ("model = 3", "[model] must be a table"),
    ],
)
def test_bad_config_gives_one_clear_line(assistant_home: Path, text: str, expected: str) -> None:
    path = write(assistant_home, text)
    with pytest.raises(cfg.ConfigError) as info:
        cfg.load()
    message = str(info.value)
    assert expected in message
    assert str(path) in message or "environment" in message
    assert "\n" not in message


def test_bad_env_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSISTANT_THREADS", "many")
    with pytest.raises(cfg.ConfigError, match="ASSISTANT_THREADS: expected int"):
        cfg.load()


def test_save_round_trip_is_atomic_and_minimal(assistant_home: Path) -> None:
    config = cfg.load()
    config.generation.system = 'Say "hi"\nthen help.'
    config.ui.keys = {"send": "enter", "new line": "ctrl+j"}
    path = cfg.save(config)
    assert "[model]" not in path.read_text()  # defaults are not written
    again = cfg.load()
    assert again.generation.system == 'Say "hi"\nthen help.'
    assert again.ui.keys == {"send": "enter", "new line": "ctrl+j"}
    assert not list(assistant_home.glob("*.partial"))


def test_unreadable_config(assistant_home: Path) -> None:
    path = assistant_home / "config.toml"
    path.write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(cfg.ConfigError, match="cannot read config file"):
        cfg.load()
