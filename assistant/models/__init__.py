"""Models: GGUF files, the registry of the user's models, llama.cpp engines and their manager.

Owns reading and checking GGUF files (``gguf_header``, ``gguf_info``), the registry, scanning and pulling
(``registry``, ``scan``, ``pull``), chat templates and structured output (``chat_template``, ``schema``),
and generation: ``engine`` streams answers from one ``llama_model`` at a time, fitting the ``prompt`` into
the window, reusing ``kv_states``, scanning for stop strings (``stop_scan``) and reporting ``stats``;
``manager`` loads and hot-swaps the engine's model.

May import the root package (``assistant``), ``assistant.config``, ``assistant.text_safety`` and
``assistant.storage``; never chat, the front doors (cli, tui, server) or distill_tools.
"""
