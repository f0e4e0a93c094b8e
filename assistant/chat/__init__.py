"""Chat: a conversation's turns and what shapes them.

Owns the session (one conversation's turns: ``session``, ``turn``), attachments (``attach``), answer
versions (``branches``), reasoning blocks (``reasoning``), personas (``persona``) and escalation to a
remote teacher (``escalation``).

May import: ``assistant`` (the root: ``AssistantError``), ``assistant.config``, ``assistant.text_safety``,
``assistant.storage`` and ``assistant.models``. Never ``assistant.server``, ``assistant.cli`` or
``assistant.tui``: the front doors import chat, not the other way round.
"""
