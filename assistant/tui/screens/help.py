"""The help screen: what the keys do (as configured) and a few tips."""

from __future__ import annotations

from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

TIPS = """
## Tips

- **Enter** sends; **Ctrl+J** (or **Shift+Enter** where your terminal sends it) starts a new line.
- **Up** in an empty message box edits your last message; send it to get a new answer.
- **Esc** stops an answer; the partial answer is kept.
- An incomplete answer (stopped, cut at the token limit, or left by a crash) is marked:
  **F5** continues it in the same message, **Ctrl+R** answers again.
- Click a code block to copy it. Select text with the mouse and press **Ctrl+C** to copy it
  (works over SSH too: the app copies through the terminal, OSC 52).
- **Ctrl+P** opens the command palette: every action is there.
- Change keys in `config.toml`:

```toml
[ui]
keys = { new_conversation = "ctrl+t", stop = "escape,f10" }
```

Everything runs on this device; nothing leaves it unless you turn escalation on.
"""


def help_markdown(rows: list[tuple[str, str, str]]) -> str:
    """Markdown for (key, description, binding id) rows; an action without a key is in the palette (Ctrl+P) only."""
    lines = ["# Keys", "", "| Key | Action | Config name |", "|---|---|---|"]
    lines += [
        f"| {f'`{key}`' if key else 'palette only'} | {description} | `{binding_id}` |"
        for key, description, binding_id in rows
    ]
    return "\n".join(lines) + "\n" + TIPS


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,f1,q", "dismiss(None)", "Close")]

    def __init__(self, markdown: str) -> None:
        super().__init__(classes="dialog-screen")
        self.markdown = markdown

    def compose(self):  # noqa: ANN201
        with VerticalScroll(classes="dialog wide", id="help"):
            yield Markdown(self.markdown, open_links=False)
