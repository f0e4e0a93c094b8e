"""What the persona tests share: persona pip's files and the `assistant persona add` arguments that make it."""

from __future__ import annotations

from pathlib import Path

PIP_SYSTEM = "You are Pip, the helpdesk assistant. Answer briefly.\n"


def pip_add_args(folder: Path, context: str, system: str = PIP_SYSTEM) -> list[str]:
    """Write pip's system prompt and context file into ``folder``; the `assistant persona add pip …` arguments (after
    the program) that use them."""
    (folder / "system.md").write_text(system)
    (folder / "facts.md").write_text(context)
    return ["persona", "add", "pip", "--system", str(folder / "system.md"), "--context", str(folder / "facts.md")]
