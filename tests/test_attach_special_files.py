"""`ask -f` on things that are not regular files (issue 26, `attach.read`): devices, sockets and pipes.

A device is endless (``/dev/zero``, ``/dev/urandom``) or interactive (``/dev/tty``), a socket cannot be read as a
file, and a FIFO nobody writes to made ``open()`` wait forever. Each is refused (or given up) with one line; a pipe
that is written and closed (``-f <(cmd)``) is read as the file it stands for. Real files, real pipes, real
processes for the command line.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from reliability.reliability_helpers import assert_one_line_error, cli_command, cli_env, run_cli

from assistant.chat import attach
from assistant.chat.attach import AttachmentError


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null", "/dev/urandom"])
def test_a_character_device_is_refused_unread(device: str) -> None:
    """/dev/zero was read up to the 8 MiB cap before being refused as too big; /dev/null came back as an empty
    file. Both are devices, said as much, before a byte is read."""
    started = time.monotonic()
    with pytest.raises(AttachmentError, match="is a character device, not a file") as caught:
        attach.read(device)
    assert "\n" not in str(caught.value) and time.monotonic() - started < 1.0


def test_a_socket_and_a_folder_are_refused(tmp_path: Path) -> None:
    listening = socket.socket(socket.AF_UNIX)
    listening.bind(str(tmp_path / "s.sock"))
    try:
        with pytest.raises(AttachmentError, match="s.sock is a socket, not a file"):
            attach.read(str(tmp_path / "s.sock"))
    finally:
        listening.close()
    with pytest.raises(AttachmentError, match="is a folder"):
        attach.read(str(tmp_path))


def test_a_fifo_nobody_writes_to_is_given_up_at_its_deadline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`open()` of a FIFO without a writer blocked forever (Ctrl-C the only way out)."""
    monkeypatch.setattr(attach, "PIPE_IDLE_S", 0.5)
    fifo = tmp_path / "quiet"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(AttachmentError, match="nothing was written to this pipe for 0 s"):
        attach.read(str(fifo))
    assert time.monotonic() - started < 5.0


def test_a_fifo_written_and_closed_is_read_whole(tmp_path: Path) -> None:
    """A writer that comes after the read started (as `mkfifo f; cmd > f &` does) is waited for, then read whole;
    the writer says when it has written, so nothing depends on timing."""
    fifo = tmp_path / "notes"
    os.mkfifo(fifo)
    text = "line one\n" * 20_000  # 180 KB: more than a pipe's buffer, so it is read in several chunks
    written = threading.Event()

    def writer() -> None:
        with open(fifo, "w", encoding="utf-8") as out:  # blocks until the reader has opened it
            out.write(text)
        written.set()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    got = attach.read(str(fifo))
    assert written.wait(10) and got.text == text and got.name == "notes" and got.size == len(text)


def test_a_pipe_over_the_cap_is_refused() -> None:
    """A pipe fed without end (`-f <(yes)`) stops at the 8 MiB cap: refused as too big, never read without limit."""
    proc = subprocess.Popen(["yes"], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        with pytest.raises(AttachmentError, match="larger than 8 MiB"):
            attach.read(f"/dev/fd/{proc.stdout.fileno()}")
    finally:
        proc.kill()
        proc.wait(10)


@pytest.mark.skipif(shutil.which("bash") is None, reason="process substitution needs bash")
def test_ask_reads_process_substitution_and_refuses_devices(assistant_home: Path) -> None:
    """Through the real command line: `-f <(printf …)` is a pipe, read whole; `-f /dev/zero` one line, fast."""
    refused = run_cli(assistant_home, "ask", "-f", "/dev/zero", "What is in it?")
    assert_one_line_error(refused, "/dev/zero is a character device")
    script = 'exec "$@" -f <(printf "The launch code is 7341.\\n") "What is the launch code?"'
    proc = subprocess.run(
        ["bash", "-c", script, "bash", *cli_command("ask", "--json", "--max-tokens", "4")],
        capture_output=True,
        text=True,
        timeout=300,
        env=cli_env(assistant_home),
    )
    assert proc.returncode == 0, proc.stderr
    [record] = json.loads(proc.stdout)["attachments"]
    assert record["size"] == len("The launch code is 7341.\n"), record  # the whole line arrived as the attachment
