"""Hostile folders (issue 28 item 4): each case is skipped or bounded with its reason, nothing hangs, and the
index stays consistent, even after kill -9 in the middle of indexing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from docs_helpers import consistent, home_store

from assistant.config import database_path
from assistant.documents.index import index_paths
from assistant.documents.reader import MAX_TEXT_BYTES

REPO = Path(__file__).resolve().parents[2]


def reasons(report) -> dict[str, str]:
    return {Path(path).name: reason for path, reason in report.skipped}


def test_binary_huge_fifo_device_and_symlink_loops_are_skipped_with_reasons(tmp_path: Path) -> None:
    folder = tmp_path / "hostile"
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.md").write_text("# Notes\n\nThe only readable document here.\n")
    (folder / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00" + os.urandom(4000))
    (folder / "latin1.txt").write_bytes(bytes(range(128, 256)) * 40)  # no NUL, not UTF-8
    with (folder / "huge.log").open("wb") as handle:  # sparse: 1 byte over the limit, never read
        handle.truncate(MAX_TEXT_BYTES + 1)
    os.mkfifo(folder / "pipe.md")
    (folder / "zero.txt").symlink_to("/dev/zero")
    (folder / "sub" / "up").symlink_to(folder)  # a folder loop
    (folder / "self.md").symlink_to(folder / "self.md")  # a link to itself
    (folder / "dangling.md").symlink_to(folder / "nowhere.md")
    start = time.monotonic()
    report = index_paths(home_store(), [folder])
    why = reasons(report)
    assert report.added == 1 and report.chunks == 1
    assert why["image.png"] == "binary file"
    assert why["latin1.txt"] == "binary file (not UTF-8 text)"
    assert why["huge.log"] == "too large: 16.0 MiB (the limit is 16 MiB)"
    assert why["pipe.md"] == "not a regular file (a FIFO)"
    assert why["zero.txt"] == "not a regular file (a character device)"
    assert why["up"] == "folder already indexed through another path (a symlink loop?)"
    assert why["self.md"].startswith("cannot read: Too many levels of symbolic links")
    assert why["dangling.md"] == "cannot read: No such file or directory"
    assert report.skipped_count == 8
    assert time.monotonic() - start < 120  # nothing blocked on the FIFO or read /dev/zero
    direct = index_paths(home_store(), [Path("/dev/zero")])
    assert direct.skipped == [("/dev/zero", "not a regular file (a character device)")]
    assert consistent(database_path()) == {"files": 1, "chunks": 1}


CHILD = """
import json, sys
from pathlib import Path
from assistant.config import database_path
from assistant.documents.index import index_paths
from assistant.storage.store import Store
report = index_paths(Store(database_path()), [Path(sys.argv[1])])
print(json.dumps(report.as_dict()))
"""


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX permissions")
def test_unreadable_files_and_folders_are_skipped(tmp_path: Path) -> None:
    """As root (CI) permissions do not apply, so the indexer runs as 'nobody' (setpriv); else as the user."""
    base = Path(tempfile.mkdtemp(prefix="docs-unreadable-"))
    try:
        base.chmod(0o777)
        folder = base / "docs"
        (folder / "locked").mkdir(parents=True)
        (folder / "open.md").write_text("# Open\n\nAnyone may read this.\n")
        (folder / "secret.md").write_text("# Secret\n\nNobody else may read this.\n")
        (folder / "locked" / "inside.md").write_text("hidden\n")
        (folder / "secret.md").chmod(0o000)
        (folder / "locked").chmod(0o000)
        home = base / "home"
        home.mkdir()
        home.chmod(0o777)
        env = {**os.environ, "ASSISTANT_HOME": str(home), "PYTHONPATH": str(REPO)}
        command = [sys.executable, "-c", CHILD, str(folder)]
        if os.geteuid() == 0:
            if not shutil.which("setpriv"):
                pytest.skip("running as root without setpriv: cannot drop the permission override")
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env, cwd=base)
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        why = {Path(s["path"]).name: s["reason"] for s in report["skipped_files"]}
        assert report["added"] == 1
        assert why == {"secret.md": "cannot read: Permission denied", "locked": "cannot list folder: Permission denied"}
    finally:
        (base / "docs" / "locked").chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


class Appending:
    """The reader's ``os`` with ``read`` appending a line to the file it reads after each of its first ``times``
    whole chunks: a real write to the real file, at the moment a concurrent writer would make it (a writer process left
    to race the read passed or failed with the machine's load)."""

    def __init__(self, path: Path, times: int) -> None:
        self.path, self.times = path, times

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(os, name)

    def read(self, fd: int, n: int) -> bytes:
        data = os.read(fd, n)
        if len(data) == n and self.times > 0:  # a whole chunk of the file (not the lines appended meanwhile)
            self.times -= 1
            with self.path.open("ab") as handle:
                handle.write(b"a line appended while the file is being indexed\n")
        return data


@pytest.mark.parametrize("changes", [100, 1])
def test_a_file_changing_while_read_is_read_again_or_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, changes: int
) -> None:
    from assistant.documents import reader

    folder = tmp_path / "live"
    folder.mkdir()
    growing = folder / "growing.log"
    growing.write_bytes(b"a steady line of log text\n" * ((3 << 20) // 26))  # 3 MiB: several chunks a read
    store = home_store()
    with monkeypatch.context() as patch:
        patch.setattr(reader, "os", Appending(growing, changes))
        report = index_paths(store, [folder])
    counts = consistent(database_path())  # whatever was written is whole: a file with all its passages or none
    if changes > reader.READS:  # it changed during every read: skipped, with the reason
        assert reasons(report) == {"growing.log": f"changed while it was read ({reader.READS} tries)"}
        assert counts["files"] == 0
    else:  # it changed during the first read only: read again, and indexed as it was then
        assert reasons(report) == {} and counts["files"] == 1


KILLED = """
import sys
from pathlib import Path
from assistant.config import database_path
from assistant.documents.index import index_paths
from assistant.storage.store import Store
index_paths(Store(database_path()), [Path(sys.argv[1])], progress=lambda done, total: print(done, flush=True))
"""


def test_kill_9_during_indexing_leaves_a_consistent_index(tmp_path: Path) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(600):  # distinct texts: each passage is embedded, so the run takes a while
        (folder / f"note{i:04d}.md").write_text(f"# Note {i}\n\nItem {i} of the list: {i * 7919 % 1000} apples.\n")
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(folder)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert child.stdout is not None
    deadline = time.monotonic() + 180
    for line in child.stdout:  # the progress lines are the event: kill once 300 files are through
        if int(line) >= 300 or time.monotonic() > deadline:
            break
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    before = consistent(database_path())
    assert before["files"] < 600 and before["files"] == before["chunks"]
    report = index_paths(home_store(), [folder])
    assert report.added == 600 - before["files"] and report.unchanged == before["files"]
    assert consistent(database_path()) == {"files": 600, "chunks": 600}


TINY = """
import json, sys, time
from pathlib import Path
from assistant.config import database_path
from assistant.documents.index import index_paths
from assistant.storage.store import Store
start = time.monotonic()
report = index_paths(Store(database_path()), [Path(sys.argv[1])])
# VmHWM is this process's own peak: getrusage's maxrss keeps the forking parent's (pytest's) across exec
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({**report.as_dict(), "wall_s": time.monotonic() - start, "max_rss_mib": hwm / 1024}))
"""


@pytest.mark.timeout(1200)
def test_a_hundred_thousand_tiny_files_in_bounded_time_and_memory(tmp_path: Path) -> None:
    folder = tmp_path / "tiny"
    for d in range(100):
        sub = folder / f"d{d:02d}"
        sub.mkdir(parents=True)
        for i in range(1000):  # 500 distinct texts, as boilerplate repeats in a real tree
            (sub / f"f{i:03d}.txt").write_text(f"tiny note {(d * 1000 + i) % 500}\n")
    done = subprocess.run(
        [sys.executable, "-c", TINY, str(folder)],
        capture_output=True,
        text=True,
        timeout=1100,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    print(f"\n100k tiny files: {report['wall_s']:.0f} s, peak RSS {report['max_rss_mib']:.0f} MiB")
    assert report["added"] == 100_000 and report["skipped"] == 0
    assert report["max_rss_mib"] < 1024
    assert consistent(database_path()) == {"files": 100_000, "chunks": 100_000}
