"""The chat UI's actions, in one table: key, footer label, command-palette entry, config name.

The bindings, the help screen's key list and the command palette are all made from ``ACTIONS``;
``[ui] keys`` in config.toml rebinds an action by its name (the first column).
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class Action:
    name: str  # the binding id, the config name and the ``action_`` method's suffix
    key: str
    description: str  # footer and help
    footer: bool = False
    palette: tuple[str, str] | None = None  # (title, help) in the command palette
    waits: str = ""  # what it does, said when it must wait for the answer being streamed (it would drop or fork it)


ACTIONS = [
    Action("stop", "escape", "Stop", True, ("Stop answer", "Stop generating; the partial answer is kept")),
    Action(
        "new_conversation",
        "ctrl+n",
        "New chat",
        True,
        ("New conversation", "Start a new chat"),
        waits="start a new chat",
    ),
    Action("pick_model", "ctrl+o", "Model", True, ("Switch model", "Pick another model from the registry")),
    Action("settings", "ctrl+s", "Settings", True, ("Settings", "System prompt, temperature, max tokens, theme")),
    Action("help", "f1", "Help", True, ("Help", "Keys and tips")),
    Action(
        "regenerate",
        "ctrl+r",
        "Regenerate the last answer",
        palette=("Regenerate answer", "Answer your last message again"),
        waits="regenerate",
    ),
    Action(
        "continue_answer",
        "f5",
        "Continue an incomplete answer",
        palette=("Continue answer", "Carry on an incomplete answer where it stopped"),
        waits="continue",
    ),
    Action(
        "edit_last",
        "ctrl+g",
        "Edit and resend your last message (Up in the empty message box does it too)",
        palette=("Edit last message", "Change your last message and resend it"),
        waits="edit your last message",
    ),
    Action(
        "previous_version",
        "alt+left",
        "Show the previous version (◀) of the last message that has versions",
        palette=("Previous version", "Show the earlier version of a regenerated or edited message"),
    ),
    Action(
        "next_version",
        "alt+right",
        "Show the next version (▶) of the last message that has versions",
        palette=("Next version", "Show the later version of a regenerated or edited message"),
    ),
    Action(
        "attach_file",
        "ctrl+l",
        "Attach a file (or type @path in your message; Tab completes it)",
        palette=("Attach a file", "Put a text file in your message (or type @path)"),
    ),
    Action(
        "pick_persona",
        "",
        "Chat as a persona (a new chat starts with it)",
        palette=("Chat as a persona", "Pick one of your personas, or none; a new chat starts with it"),
        waits="pick a persona",
    ),
    Action(
        "distill_persona",
        "",
        "Distil this persona into its own student (in the background)",
        palette=("Distil this persona", "Train a student that answers like the persona without its prompt"),
    ),
    Action(
        "cancel_distill",
        "",
        "Cancel the distillation running in the background (it resumes when started again)",
        palette=("Cancel distillation", "Stop the persona distillation in the background; it resumes when restarted"),
    ),
    Action(
        "copy_answer", "f3", "Copy the last answer", palette=("Copy answer", "Copy the last answer to the clipboard")
    ),
    Action(
        "copy_code",
        "f4",
        "Copy the last code block",
        palette=("Copy code block", "Copy the last code block to the clipboard"),
    ),
    Action(
        "search", "ctrl+f", "Search the history", palette=("Search history", "Full-text search over all your chats")
    ),
    Action(
        "rename_conversation",
        "f2",
        "Rename the conversation",
        palette=("Rename conversation", "Give this chat a new title"),
    ),
    Action(
        "delete_conversation",
        "f8",
        "Delete the conversation",
        palette=("Delete conversation", "Delete this chat (asks first)"),
        waits="delete the chat",
    ),
    Action(
        "toggle_sidebar",
        "ctrl+b",
        "Show/hide the sidebar",
        palette=("Toggle sidebar", "Show or hide the conversation list"),
    ),
    Action("quit", "ctrl+q", "Quit"),
]
PROMPT_KEYS = [("send", "enter", "Send your message"), ("newline", "ctrl+j,shift+enter", "New line in your message")]
WAITS_FOR_THE_ANSWER = {a.name: a.waits for a in ACTIONS if a.waits}
KNOWN = {a.name for a in ACTIONS} | {name for name, _key, _description in PROMPT_KEYS}


def bindings() -> list[Binding]:
    """Textual bindings for every action (Ctrl+Q has priority: it quits from any screen)."""
    return [
        Binding(a.key, a.name, a.description, id=a.name, show=a.footer, priority=a.name == "quit")
        for a in ACTIONS
        if a.key  # an action without a key is in the palette only
    ]


def key_rows(keymap: dict[str, str]) -> list[tuple[str, str, str]]:
    """(key, description, config name) for every action, with the user's keymap applied."""
    rows = [(keymap.get(name, key), description, name) for name, key, description in PROMPT_KEYS]
    return rows + [(keymap.get(a.name, a.key), a.description, a.name) for a in ACTIONS]


def key_of(keymap: dict[str, str], name: str) -> str:
    """The key(s) bound to an action, with the user's keymap applied."""
    return next(key for key, _description, i in key_rows(keymap) if i == name)


def key_label(keys: str) -> str:
    """The first of a binding's keys as people write it: 'ctrl+r,f9' -> 'Ctrl+R', 'f5' -> 'F5'."""
    return "+".join(part.upper() if len(part) == 1 else part.capitalize() for part in keys.split(",")[0].split("+"))
