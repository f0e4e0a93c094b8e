from pathlib import Path

import pytest

from assistant import config as cfg


@pytest.fixture(autouse=True)
def temperature_from_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests read the config file's temperature: lift the suite's greedy default (``conftest.py``)."""
    monkeypatch.delenv("ASSISTANT_TEMPERATURE", raising=False)


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


def test_a_switch_in_the_environment_reads_words_and_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ASSISTANT_SPECULATE=0`` turns drafting off (``bool("0")`` would be True); anything else is one line."""
    for raw, expected in (("0", False), ("off", False), ("FALSE", False), ("1", True), ("yes", True)):
        monkeypatch.setenv("ASSISTANT_SPECULATE", raw)
        assert cfg.load().model.speculate is expected
    monkeypatch.setenv("ASSISTANT_SPECULATE", "maybe")
    with pytest.raises(cfg.ConfigError, match="ASSISTANT_SPECULATE: expected bool, got 'maybe'"):
        cfg.load()


def test_an_empty_numeric_env_value_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ASSISTANT_THREADS= command`` (as shells write "unset for this command") keeps the file's value."""
    monkeypatch.setenv("ASSISTANT_THREADS", "")
    config = cfg.load()
    assert config.model.threads == cfg.Config().model.threads and "model.threads" not in config.overrides


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


COMMENTED = """\
# My assistant settings. Keep this comment.
[generation]
temperature = 0.7   # warm enough
system = "Be brief."

# the teacher on my desktop
[teacher]
url = "http://127.0.0.1:8080/v1"
model = "qwen"

[escalation]
policy = "ask"  # ask before anything leaves the laptop
"""


def test_an_environment_override_is_never_saved(assistant_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSISTANT_ESCALATION", "auto")
    monkeypatch.setenv("ASSISTANT_N_CTX", "2048")
    config = cfg.load()
    assert (config.escalation.policy, config.model.n_ctx) == ("auto", 2048)
    assert cfg.load_file().escalation.policy == "never"  # the file alone (there is none yet)
    path = cfg.save(config)  # e.g. the UI saving its settings
    assert "auto" not in path.read_text() and "n_ctx" not in path.read_text()
    config.generation.temperature = 0.3
    cfg.save(config)
    assert 'policy = "auto"' not in path.read_text() and "temperature = 0.3" in path.read_text()
    assert cfg.load_file().escalation.policy == "never" and cfg.load_file().model.n_ctx == 4096
    write(assistant_home, COMMENTED)
    cfg.save(cfg.load())  # a load-then-save under the override keeps the file's own value
    assert cfg.load_file().escalation.policy == "ask" and path.read_text() == COMMENTED


def test_a_setting_the_user_changes_is_saved_even_under_an_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSISTANT_ESCALATION", "auto")
    config = cfg.load()
    config.escalation.policy = "ask"  # chosen in the UI: now a file value
    cfg.save(config)
    assert cfg.load_file().escalation.policy == "ask"


def test_a_commented_config_survives_a_settings_save(assistant_home: Path) -> None:
    path = write(assistant_home, COMMENTED)
    config = cfg.load()
    # what the UI's settings screen does: system prompt, temperature, max tokens, theme
    config.generation.temperature = 0.2
    config.generation.max_tokens = 512
    config.ui.theme = "textual-light"
    cfg.save(config)
    expected = COMMENTED.replace("temperature = 0.7   # warm enough", "temperature = 0.2   # warm enough")
    expected = expected.replace('system = "Be brief."\n', 'system = "Be brief."\nmax_tokens = 512\n')
    assert path.read_text() == expected + '\n[ui]\ntheme = "textual-light"\n'
    again = cfg.load()
    assert (again.generation.temperature, again.generation.max_tokens, again.ui.theme) == (0.2, 512, "textual-light")


def test_saving_keeps_what_another_process_wrote_meanwhile(assistant_home: Path) -> None:
    from assistant.models.registry import current_default, set_default

    path = write(assistant_home, COMMENTED)
    ui = cfg.load()  # the chat UI holds its settings...
    set_default("my-student")  # ...while `assistant models use my-student` writes the file
    ui.ui.theme = "nord"
    cfg.save(ui)
    assert current_default() == "my-student" and cfg.load().ui.theme == "nord"
    assert path.read_text().startswith("# My assistant settings. Keep this comment.\n")
