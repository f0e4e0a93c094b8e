"""Bad config and bad input: one clear line, nothing lost; terminal escapes in output made harmless."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reliability_helpers import assert_one_line_error, run_cli

from assistant.storage.store import Store
from assistant.text_safety import StreamSanitizer, sanitize

BAD_CONFIGS = {
    "malformed": ("[model\ndefault = 'x'", "invalid TOML"),
    "unknown_section": ("[modle]\ndefault = 'x'\n", "unknown section"),
    "unknown_key": ("[model]\ncontext = 4096\n", "unknown key"),
    "wrong_type": ("[model]\nn_ctx = 'big'\n", "expected int"),
    "bad_policy": ("[escalation]\npolicy = 'sometimes'\n", "policy"),
    "not_a_table": ("model = 3\n", "must be a table"),
    "bad_utf8": (b"[model]\ndefault = '\xff\xfe'\n", "cannot read"),
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_bad_config_is_one_line(name: str, assistant_home: Path) -> None:
    content, needle = BAD_CONFIGS[name]
    path = assistant_home / "config.toml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = run_cli(assistant_home, "ask", "hi", timeout=60)
    line = assert_one_line_error(result, needle)
    assert "config.toml" in line or name == "bad_policy"


def test_unreadable_config_is_one_line(assistant_home: Path) -> None:
    (assistant_home / "config.toml").mkdir()  # root reads any file, but not a folder
    assert_one_line_error(run_cli(assistant_home, "ask", "hi", timeout=60), "cannot read")


def test_bad_environment_override_is_one_line(assistant_home: Path) -> None:
    assert_one_line_error(run_cli(assistant_home, "ask", "hi", ASSISTANT_N_CTX="lots"), "ASSISTANT_N_CTX")


def test_one_megabyte_paste_is_refused_with_the_numbers_and_kept(assistant_home: Path) -> None:
    """Too long for the window even alone: refused in one line with its token count and the window's, never cut
    (cutting lost a question at its end: issue 26 row 4). The paste is kept in the history as the question, with no
    empty answer left to continue."""
    paste = ("def f(x):\n    return [i * i for i in range(x) if i % 3 == 0]\n" * 20000)[: 1 << 20]
    result = run_cli(assistant_home, "ask", "--max-tokens", "4", "--temperature", "0", "-", stdin=paste, timeout=180)
    assert_one_line_error(result, "tokens", "512-token context", "shorten it")
    store = Store(assistant_home / "assistant.db")
    [question] = store.messages(store.latest_conversation_id())
    assert question["role"] == "user" and question["content"] == paste  # the whole paste is kept in the history


HOSTILE_OUTPUT = {
    "clear_screen": ("a\x1b[2J\x1b[Hb", "ab"),
    "set_title": ("x\x1b]0;pwned\x07y", "xy"),
    "clipboard_osc52": ("x\x1b]52;c;cm0gLXJmIH4=\x1b\\y", "xy"),
    "hyperlink_osc8": ("\x1b]8;;http://evil\x1b\\click\x1b]8;;\x1b\\", "click"),
    "unterminated_osc": ("a\x1b]0;title never ends\nnext line", "a\nnext line"),
    "c1_csi": ("a\x9b31mred", "ared"),
    "carriage_return_overwrite": ("rm -rf ~\rls", "rm -rf ~ls"),
    "crlf_kept_as_newline": ("one\r\ntwo", "one\ntwo"),
    "backspace_and_bell": ("ab\x08\x08cd\x07", "abcd"),
    "bidi_override": ("user\u202eexe.txt", "userexe.txt"),
    "keeps_text": ("héllo\twörld\n日本 🙂", "héllo\twörld\n日本 🙂"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_OUTPUT))
def test_sanitize(name: str) -> None:
    text, expected = HOSTILE_OUTPUT[name]
    assert sanitize(text) == expected


@pytest.mark.parametrize("name", sorted(HOSTILE_OUTPUT))
def test_sanitize_stream_split_anywhere(name: str) -> None:
    text, expected = HOSTILE_OUTPUT[name]
    for cut in range(len(text) + 1):
        stream = StreamSanitizer()
        assert stream.feed(text[:cut]) + stream.feed(text[cut:]) == expected


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=0x2100)), st.integers(0, 50))
def test_sanitized_text_holds_no_controls(text: str, cut: int) -> None:
    stream = StreamSanitizer()
    out = stream.feed(text[:cut]) + stream.feed(text[cut:])
    assert not any((ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F for c in out)
    assert not any(0x202A <= ord(c) <= 0x202E or 0x2066 <= ord(c) <= 0x2069 for c in out)
    assert sanitize(out) == out  # idempotent


def test_history_show_neutralises_stored_escapes(assistant_home: Path) -> None:
    store = Store(assistant_home / "assistant.db")
    cid = store.new_conversation(title="evil\x1b]0;title\x07")
    store.add_message(cid, "user", "hi")
    store.add_message(cid, "assistant", "before\x1b[2J\x1b]52;c;ZXZpbA==\x07after")
    store.close()
    for args in (("history", "show", str(cid)), ("history", "list"), ("history", "search", "before")):
        result = run_cli(assistant_home, *args)
        assert result.returncode == 0, result.stderr
        assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "beforeafter" in run_cli(assistant_home, "history", "show", str(cid)).stdout
    store = Store(assistant_home / "assistant.db")
    assert "\x1b[2J" in store.messages(cid)[1]["content"]  # stored text is never altered
