"""The chat UI (Textual): ``assistant`` and ``assistant chat`` open it."""
