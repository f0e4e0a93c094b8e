"""Issue 26 row 10 / issue 27.5: a distilled persona whose system prompt or context changes answers prompted again.

The student learnt the persona's prompt as it was when it was distilled; an edit it never saw must not be silently
ignored. The persona records a fingerprint of what its student was distilled from; when the prompt no longer matches,
the persona is *stale*: it answers prompted (base model + its context), says so once per `ask`, and `persona show` /
`persona list` tell which state it is in. Real processes; the "student" is the packaged model registered under the
persona's name, so no distillation runs here (the real one is in tests/distill/test_persona_distill.py).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from persona_helpers import pip_add_args
from reliability.reliability_helpers import cli_command, cli_env

FACTS = "- The office wifi password is tulip42.\n"
EXTRA = "- The cafeteria opens at 8 am.\n"


def cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(cli_command(*args), capture_output=True, text=True, timeout=300, env=cli_env(home))


def ask(home: Path, *extra: str) -> subprocess.CompletedProcess:
    proc = cli(home, "ask", "--persona", "pip", "--max-tokens", "4", *extra, "Hello")
    assert proc.returncode == 0, proc.stderr
    return proc


def state(home: Path) -> tuple[str, str]:
    """(``persona show --json``'s state, ``persona list --json``'s state) of pip."""
    shown = json.loads(cli(home, "persona", "show", "pip", "--json").stdout)
    listed = {p["name"]: p for p in json.loads(cli(home, "persona", "list", "--json").stdout)}
    return shown["state"], listed["pip"]["state"]


def system_of(conversation_id: int) -> str:
    from assistant.config import database_path
    from assistant.storage.store import Store

    return Store(database_path()).conversation(conversation_id)["system"]


@pytest.fixture
def distilled(assistant_home: Path, tmp_path: Path, smollm_path: Path) -> Path:
    """Persona pip pointing at a "student" registered as ``pip`` (a persona file as a distillation leaves it)."""
    from assistant.config import database_path
    from assistant.models.registry import Registry
    from assistant.storage.store import Store

    (tmp_path / "extra.md").write_text(EXTRA)
    added = cli(assistant_home, *pip_add_args(tmp_path, FACTS))
    assert added.returncode == 0, added.stderr
    Registry(Store(database_path())).import_file(str(smollm_path), name="pip", link=True)
    path = assistant_home / "personas" / "pip.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "student": "pip"}))
    return tmp_path


def test_an_edited_context_makes_the_student_stale(assistant_home: Path, distilled: Path) -> None:
    """`persona edit --add-context` used to say `updated` while `ask` kept answering from the old student, which
    runs without any context: the new file was silently ignored. Now the edit tells, the persona answers prompted
    on its base model with the whole new context, and every `ask` says why (one note on stderr, and in --json
    "notes") until it is distilled again. (This persona file has no fingerprint yet, as one distilled before there
    was one: its student is taken as matching the prompt it had before the edit.)"""
    assert state(assistant_home) == ("distilled", "distilled")
    answer = json.loads(ask(assistant_home, "--json").stdout)
    assert answer["model"] == "pip" and answer["notes"] == [] and system_of(answer["conversation_id"]) == ""

    edit = cli(assistant_home, "persona", "edit", "pip", "--add-context", str(distilled / "extra.md"))
    assert edit.returncode == 0 and "updated" in edit.stdout and "distill persona pip" in edit.stdout, edit
    assert state(assistant_home) == ("stale", "stale")
    answer = json.loads(ask(assistant_home, "--json").stdout)
    assert answer["model"] == "smollm2-135m"  # the base model, prompted
    assert "tulip42" in system_of(answer["conversation_id"]) and "cafeteria" in system_of(answer["conversation_id"])
    assert len(answer["notes"]) == 1 and "distill persona pip" in answer["notes"][0], answer["notes"]
    lines = ask(assistant_home).stderr.splitlines()  # (also a note that 4 tokens cut the answer short)
    assert len(stale := [line for line in lines if "stale" in line]) == 1 and stale[0].startswith("note: "), lines

    shown = cli(assistant_home, "persona", "show", "pip").stdout
    assert "stale" in shown and "distill persona pip" in shown


@pytest.mark.samples("sets a persona's temperature to check it keeps the student; it asks the model nothing")
def test_a_new_system_prompt_makes_it_stale_and_settings_do_not(assistant_home: Path, distilled: Path) -> None:
    """The student learnt the prompt, not the sampling settings: a new temperature keeps it distilled; a new system
    prompt does not. Going back to the prompt it was distilled from makes the student current again (same
    fingerprint), and `--prompted` forgets it."""
    assert cli(assistant_home, "persona", "edit", "pip", "--temperature", "0.3").returncode == 0
    assert state(assistant_home) == ("distilled", "distilled")
    (distilled / "other.md").write_text("You are Pop. Answer at length.\n")
    assert cli(assistant_home, "persona", "edit", "pip", "--system", str(distilled / "other.md")).returncode == 0
    assert state(assistant_home) == ("stale", "stale")
    assert cli(assistant_home, "persona", "edit", "pip", "--system", str(distilled / "system.md")).returncode == 0
    assert state(assistant_home) == ("distilled", "distilled")
    assert cli(assistant_home, "persona", "edit", "pip", "--prompted").returncode == 0
    assert state(assistant_home) == ("prompted", "prompted")
    assert json.loads((assistant_home / "personas" / "pip.json").read_text())["student"] == ""


def test_the_student_remembers_the_prompt_it_was_distilled_from(assistant_home: Path, distilled: Path) -> None:
    """A distillation points the persona at its student with the fingerprint of the prompt *it* read: a persona
    edited while the run was under way is stale as soon as the run adopts its student."""
    from assistant.chat import persona as personas
    from assistant.cli.distill import adopt

    before = personas.load("pip")
    fingerprint = before.fingerprint()
    before.student = ""
    before.system = "You are Pip, edited during the run.\n"
    personas.save(before)
    adopt("pip", fingerprint)
    after = personas.load("pip")
    assert after.student == "pip" and after.student_fingerprint == fingerprint and after.state == "stale"
    assert after.runtime_model() == "" and "edited during the run" in after.runtime_system()
    adopt("pip", after.fingerprint())
    assert personas.load("pip").state == "distilled" and personas.load("pip").runtime_system() == ""


def test_adding_or_dropping_documents_makes_the_student_stale(tmp_path: Path) -> None:
    """A persona over a folder (issue 28) learnt its questions from those documents: another set of paths is not
    what the student learnt. A persona without documents keeps the fingerprint it always had (no false stale)."""
    import hashlib

    from assistant.chat.persona import Persona

    plain = Persona("pip", system="You are Pip.")
    assert plain.fingerprint() == hashlib.sha256(plain.context_text().encode()).hexdigest()
    learnt = Persona("pip", system="You are Pip.", docs=[str(tmp_path / "handbook")], student="pip")
    learnt.student_fingerprint = learnt.fingerprint()
    assert learnt.state == "distilled"
    learnt.docs.append(str(tmp_path / "notes"))
    assert learnt.state == "stale" and "documents" in learnt.stale_note()
    learnt.docs = [str(tmp_path / "handbook")]
    assert learnt.state == "distilled"
