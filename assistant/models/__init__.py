"""Models: GGUF files, the registry of the user's models, llama.cpp engines and their manager.

Owns reading and checking GGUF files (``gguf_header``, ``gguf_info``), the registry, scanning and pulling
(``registry``, ``scan``, ``pull``), chat templates and structured output (``chat_template``, ``schema``),
and generation: ``engine`` streams answers from one ``llama_model`` at a time, fitting the ``prompt`` into
the window, reusing ``kv_states``, choosing tokens (``sampler``: a grammar checked on the chosen token first),
drafting from the context (``draft``: prompt lookup), scanning for stop strings (``stop_scan``) and reporting ``stats``;
``manager`` loads and hot-swaps the engine's model.

May import the root package (``assistant``), ``assistant.config``, ``assistant.text_safety`` and
``assistant.storage``; never chat, the front doors (cli, tui, server) or distill_tools.
"""

import os

# llama.cpp's threads meet at OpenMP barriers hundreds of times a token; by default they spin there, so on a
# machine busy with other work a descheduled thread stalls the others for whole time slices (decode 10-25x
# slower). Sleeping at the barriers instead keeps a fair share. Read once, when llama.cpp's OpenMP library
# loads (the first ``import llama_cpp``): hence here, before any module of this package can import it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
