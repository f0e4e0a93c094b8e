"""The command line's shape: one parser of command groups, one error path, completion made from the parser,
no private imports between modules (issue 15 item 5). Real processes and a real bash."""

from __future__ import annotations

import argparse
import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from reliability.reliability_helpers import cli_env

from assistant.cli.completion import walk
from assistant.cli.main import GROUPS, build_parser

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("assistant", "distill_tools")


def _run(home: Path, *command: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *command], capture_output=True, text=True, timeout=120, env=cli_env(home), cwd=REPO, **kwargs
    )


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, parser) of every command that has no subcommands."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for name, child in subs[0].choices.items() if subs else ():
        yield from _leaves(child, (*path, name))


def test_every_command_has_a_handler_from_its_own_group_module() -> None:
    groups = {c.path for c in walk(build_parser()) if c.path and " " not in c.path}
    assert groups == {"ask", "chat", "history", "models", "persona", "distill", "serve", "docs", "completion"}
    assert sorted(GROUPS) == sorted(f"assistant.cli.{g}" for g in groups)
    leaves = list(_leaves(build_parser()))
    assert len(leaves) > 20
    for path, parser in leaves:
        handler = parser.get_default("handler")
        assert callable(handler), path
        home = "distill_tools." if path[0] == "distill" else f"assistant.cli.{path[0]}"  # distill: the library's own
        assert handler.__module__.startswith(home), path


def test_bash_completion_offers_groups_subcommands_options_and_choices(assistant_home: Path, tmp_path: Path) -> None:
    script = _run(assistant_home, "-m", "assistant", "completion", "bash")
    assert script.returncode == 0, script.stderr
    path = tmp_path / "assistant.bash"
    path.write_text(script.stdout)
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True, timeout=30).returncode == 0
    probe = f"""source {path}
t() {{ COMP_WORDS=("$@"); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); _assistant; echo "${{COMPREPLY[*]}}"; }}
t assistant ""
t assistant models ""
t assistant distill ""
t assistant history export 3 --f
t assistant ask --escalate a
t assistant completion ""
t assistant models check ""
"""
    lines = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30).stdout.splitlines()
    assert lines[0].split() == ["chat", "ask", "history", "models", "persona", "distill", "serve", "docs", "completion"]
    assert set(lines[1].split()) == {"list", "check", "import", "pull", "scan", "catalog", "use", "rm"}
    assert {"run", "eval", "export", "from-history", "persona"} <= set(lines[2].split())
    assert set(lines[3].split()) == {"--format", "--force"}
    assert lines[4].split() == ["ask", "auto"]
    assert lines[5].split() == ["bash", "zsh", "fish"]
    assert lines[6] == ""  # a path argument: bash falls back to file names (complete -o default)


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_completion_name_every_group(assistant_home: Path, tmp_path: Path, shell: str) -> None:
    script = _run(assistant_home, "-m", "assistant", "completion", shell)
    assert script.returncode == 0, script.stderr
    for group in ("chat", "ask", "history", "models", "persona", "distill", "serve"):
        assert group in script.stdout
    if not shutil.which(shell):  # the bash script that zsh runs is checked above
        return
    path = tmp_path / f"assistant.{shell}"
    path.write_text(script.stdout)
    assert subprocess.run([shell, "-n", str(path)], capture_output=True, timeout=30).returncode == 0
    if shell == "fish":
        probe = ["-c", f"source {path}; complete -C 'assistant models '"]
    else:  # bashcompinit's compgen runs the function as bash would (zsh itself then filters by the typed word)
        probe = [
            "-f",
            "-c",
            f"autoload -U +X compinit && compinit -u -d {tmp_path}/zcomp; source {path}; "
            "COMP_WORDS=(assistant models ''); COMP_CWORD=2; words=($COMP_WORDS); CURRENT=3; "
            "compgen -F _assistant -- ''",
        ]
    offered = subprocess.run(
        [shell, *probe],
        capture_output=True,
        text=True,
        timeout=60,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    ).stdout.split()
    assert {"list", "check", "import", "pull", "scan", "catalog", "use", "rm"} <= set(offered), offered


def test_distill_errors_take_the_one_error_path(assistant_home: Path) -> None:
    """`python -m distill_tools` and `assistant distill` print one sanitised line (an escape sequence and a
    newline in the recipe's name are not passed to the terminal)."""
    hostile = "no\x1b]0;PWNED\x07\nsuch"
    for prog, command in (("distill", ("-m", "distill_tools")), ("assistant", ("-m", "assistant", "distill"))):
        result = _run(assistant_home, *command, "run", hostile)
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1 and "\x1b" not in result.stderr and "\x07" not in result.stderr
        assert result.stderr.startswith(f"{prog}: error: no such: no such recipe file"), result.stderr


@pytest.mark.parametrize(
    "command", [("-m", "assistant", "completion", "bash"), ("-m", "distill_tools", "from-history", "-o", "pairs.jsonl")]
)
def test_a_closed_pipe_is_quiet(assistant_home: Path, command: tuple[str, ...]) -> None:
    """The reader went away before the command wrote (like `| head`): exit 0, no traceback."""
    env = cli_env(assistant_home)
    proc = subprocess.Popen(
        [sys.executable, *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=assistant_home
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err


def _private_uses(path: Path, package_root: Path) -> list[str]:
    """``from our.module import _name`` and ``module._name`` where ``module`` is another module of ours."""
    own = ".".join(path.relative_to(package_root).with_suffix("").parts)
    where = path.relative_to(package_root)
    found, modules = [], set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
            if node.module != own:
                found += [f"{where}:{node.lineno} {node.module}.{a.name}" for a in node.names if _private(a.name)]
            modules |= {a.asname or a.name for a in node.names if f"{node.module}.{a.name}" != own}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
            if _private(node.attr):
                found.append(f"{where}:{node.lineno} {node.value.id}.{node.attr}")
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_private_imports_between_modules() -> None:
    """assistant and distill_tools use each other's (and their own modules') public names only."""
    found = [
        hit
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
        for hit in _private_uses(path, REPO)
    ]
    assert found == []
