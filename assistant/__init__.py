"""assistant: a private, on-device AI assistant built on distilled models."""

__version__ = "0.1.0"


class AssistantError(Exception):
    """A user-facing error: its message is one clear line, shown without a traceback."""
