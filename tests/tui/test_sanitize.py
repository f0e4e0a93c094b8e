"""Model output cannot drive the terminal: control characters and escape sequences are removed."""

from __future__ import annotations

from assistant.storage.store import Message
from assistant.text_safety import StreamSanitizer as ControlFilter
from assistant.text_safety import sanitize as clean
from assistant.tui.widgets.message import code_blocks, message_meta, stored_view


def test_clean_keeps_text_newlines_and_tabs() -> None:
    assert clean("a\tb\nc — ünï 😀") == "a\tb\nc — ünï 😀"


def test_clean_removes_sequences_and_controls() -> None:
    assert clean("\x1b[1;31mred\x1b[0m") == "red"
    assert clean("x\x1b]52;c;ZXZpbA==\x07y") == "xy"  # OSC 52 clipboard write
    assert clean("x\x1b]0;title\x1b\\y") == "xy"  # OSC with ST terminator
    assert clean("a\x00b\x07c\x08d\re\x7ff\x9b2Jg") == "abcdefg"


def test_sequences_split_across_streamed_pieces() -> None:
    f = ControlFilter()
    pieces = ["ok \x1b", "[3", "1mred", "\x1b]2;", "evil title", "\x07 done"]
    assert "".join(f.feed(p) for p in pieces) == "ok red done"


def test_unterminated_string_sequence_ends_at_newline() -> None:
    assert clean("a\x1b]never ends\nvisible") == "a\nvisible"


def test_code_blocks_and_meta() -> None:
    text = "intro\n```python\nprint(1)\n```\nmid\n~~~\nraw\n~~~\n```sh\nunclosed"
    assert code_blocks(text) == ["print(1)", "raw", "unclosed"]
    meta = message_meta(Message(1, 1, "assistant", "answer", model="m", finish_reason="cancelled"))
    assert meta == "m · stopped"


def test_an_answer_cut_by_a_full_disk_says_so_in_its_header() -> None:
    """finish_reason "failed" (a write failed mid-answer, see tests/reliability/test_disk.py) has its own label."""
    failed = Message(7, 1, "assistant", "half an ans", model="m", finish_reason="failed", complete=True)
    assert message_meta(failed) == "m · failed: cut short by a write error (disk full?)"
    header = stored_view(failed, []).header().plain
    assert header == "Assistant  m · failed: cut short by a write error (disk full?)"
    crashed = Message(8, 1, "assistant", "half", model="m", complete=False)  # no finish reason: the process died
    assert message_meta(crashed) == "m · incomplete"
