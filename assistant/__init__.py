"""assistant: a private, on-device AI assistant built on distilled models.

The packages are the layers; data flows one way, and ``tests/test_layers.py`` holds the rules::

    cli/ · tui/ · server/      the front doors: the command line, the chat UI, the local OpenAI-compatible API
        └─► chat/              one conversation's turn (session), attachments, versions, personas, escalation/
              ├─► documents/   your files' index (passages, vectors, full text) and its search
              └─► models/      GGUF files, the registry, llama.cpp engines and the manager that swaps them
                    └─► storage/   the history database (numbered migrations) and atomic file writes

``config`` (settings) and ``text_safety`` (terminal-safe text) sit beside them, usable by all; this module holds
only :class:`AssistantError`. ``distill_tools`` is a library of its own that uses ``config``, ``storage.files``
and ``models``; the command line finds its commands lazily.
"""

__version__ = "0.1.0"


class AssistantError(Exception):
    """A user-facing error: its message is one clear line, shown without a traceback."""
