"""The local OpenAI-compatible API server (`assistant serve`).

Owns the app and its life cycle (``app``), the checked request (``request``), what it answers with
(``response``), who may call it (``guard``), the queue in front of the engine (``gate``), streaming
(``stream``) and which stored conversation a request continues (``conversations``).

May import: ``assistant`` (the root: ``AssistantError``), ``assistant.config``, ``assistant.text_safety``,
``assistant.storage``, ``assistant.models`` and ``assistant.chat`` (each request is a turn through a
``Session``). Never ``assistant.cli`` or ``assistant.tui``.
"""
