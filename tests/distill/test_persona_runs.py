"""Issue 26 rows 14 and 15, issue 27.5: how a `distill persona` run stops, starts over and is refused; the
library's own command line. Real processes (`assistant distill persona`, `python -m distill_tools`)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ONE_FACT = "- The office wifi password is tulip42.\n"


def env(home: Path) -> dict[str, str]:
    return {**os.environ, "ASSISTANT_HOME": str(home), "PYTHONUNBUFFERED": "1"}


def run(home: Path, *args: str, program: str = "assistant", timeout: float = 300) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", program, *args]
    return subprocess.run(command, capture_output=True, text=True, env=env(home), timeout=timeout)


@pytest.fixture
def pip(assistant_home: Path, tmp_path: Path) -> str:
    (tmp_path / "facts.md").write_text(ONE_FACT)
    proc = run(assistant_home, "persona", "add", "pip", "--context", str(tmp_path / "facts.md"))
    assert proc.returncode == 0, proc.stderr
    return "pip"


class Running:
    """A command in its own process group (as a terminal's foreground job), its stderr read line by line."""

    def __init__(self, home: Path, *args: str, program: str = "assistant") -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", program, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(home),
            start_new_session=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, wanted: Callable[[dict], bool], deadline_s: float = 900) -> dict:
        """The first ``progress:`` line whose JSON satisfies ``wanted``; fails at the deadline or if the run ends."""
        end = time.monotonic() + deadline_s
        while (left := end - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                pytest.fail(f"the run ended first ({self.process.wait()}): {''.join(self.stderr)[-2000:]}")
            if line.startswith("progress: ") and wanted(event := json.loads(line[len("progress: ") :])):
                return event
        self.process.kill()
        pytest.fail(f"no such progress line in {deadline_s:.0f} s: {''.join(self.stderr)[-2000:]}")

    def ctrl_c(self) -> tuple[int, list[str]]:
        """SIGINT to the whole process group, as Ctrl-C in a terminal; (exit code, stderr lines that are not
        progress)."""
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            code = self.process.wait(timeout=300)
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
        time.sleep(0.2)  # the reader thread takes the last lines
        return code, [line for line in self.stderr if line.strip() and not line.startswith("progress: ")]


def training(event: dict) -> bool:
    return str(event["phase"]).startswith("training (loss")


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_ctrl_c_exits_130_and_fresh_starts_over(pip: str, assistant_home: Path) -> None:
    """Row 14: the README promises exit 130 after Ctrl-C for every command, `assistant distill` included; Ctrl-C
    during training used to exit 1 (`error: interrupted at step …`). It stops at the next step with a checkpoint,
    says so in one line (how to resume), exits 130; `python -m distill_tools persona` (which runs the former in a
    child) too, and resumes from that checkpoint. `--fresh` (issue 27.5) then starts over: the cached teacher
    answers and the checkpoints are gone before the first step."""
    work = assistant_home / "distill" / "persona" / "pip"
    first = Running(assistant_home, "distill", "persona", "pip", "--ci", "--progress-json")
    first.wait_for(training)
    code, lines = first.ctrl_c()
    assert code == 130 and len(lines) == 1, lines
    assert "interrupted" in lines[0] and "resume" in lines[0] and "error" not in lines[0]  # Ctrl-C is no error
    assert (work / "checkpoints" / "latest").exists() and (work / "teacher-context").exists()

    again = Running(assistant_home, "persona", "pip", "--ci", "--progress-json", program="distill_tools")
    assert again.wait_for(training)["done"] >= 2  # its first step: the one after the checkpoint, not step 1
    code, lines = again.ctrl_c()
    assert code == 130 and len(lines) == 1 and "interrupted" in lines[0] and "error" not in lines[0], lines

    fresh = Running(assistant_home, "distill", "persona", "pip", "--ci", "--fresh", "--progress-json")
    fresh.wait_for(lambda e: True)
    code, lines = fresh.ctrl_c()
    assert code == 130 and len(lines) == 1, lines
    assert not (work / "checkpoints").exists() and not (work / "teacher-context").exists()
    assert json.loads((assistant_home / "personas" / "pip.json").read_text())["student"] == ""


def test_a_model_named_like_the_persona_in_another_case_is_refused(
    pip: str, assistant_home: Path, smollm_path: Path
) -> None:
    """`PIP`'s student would be registered next to a model `pip`: two names a user reads as one (and one file on
    macOS and Windows). Refused before anything loads, as for the exact name."""
    from assistant.config import database_path
    from assistant.models.registry import Registry
    from assistant.storage.store import Store
    from distill_tools import DistillError
    from distill_tools.persona import check_model_name

    Registry(Store(database_path())).import_file(str(smollm_path), name="Pip", link=True)
    with pytest.raises(DistillError, match="'Pip' already exists"):
        check_model_name("pip")
    with pytest.raises(DistillError, match="packaged model"):
        check_model_name("SmolLM2-135M")
    proc = run(assistant_home, "distill", "persona", "pip", "--ci", timeout=120)
    assert proc.returncode == 1 and "'Pip' already exists" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["persona"], ["persona", "required", "name"]),
        (["bogus"], ["invalid choice", "bogus"]),
        (["run", "tiny", "--nproc", "two"], ["run", "--nproc", "invalid int"]),
        (["persona", "pip", "--minutes", "soon"], ["persona", "--minutes", "invalid float"]),
    ],
)
def test_the_librarys_parser_errors_are_one_line(assistant_home: Path, args: list[str], needles: list[str]) -> None:
    """`python -m distill_tools` fails as `assistant` does: one line, `distill: error: …` and exit 1, not argparse's
    usage block and exit 2."""
    proc = run(assistant_home, *args, program="distill_tools", timeout=60)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and proc.stdout == "", proc
    assert lines[0].startswith("distill: error: ") and "--help" in lines[0], lines
    for needle in needles:
        assert needle in lines[0], lines
