"""A grammar read by llama.cpp's own parser in a short-lived child process before any model samples with it.

llama.cpp refuses a grammar it finds too big ("number of rules that are going to be repeated … exceeds sane
defaults": a JSON Schema string with ``maxLength`` 1001, a pattern ``[ab]{0,1500}``) by returning no sampler, which
llama-cpp-python then uses: the process died (exit 139) on a 250-byte request. Its parser also recurses once per
nesting level. So every new grammar is parsed first in a child process — the same parser, so the same verdict —
and a refusal, a crash or a parse past its deadline becomes one clear line; the process that serves is never at
risk. A verdict is cached per grammar text (a client usually sends the same schema again).
"""

from __future__ import annotations

import subprocess
import sys
from functools import lru_cache

from assistant import AssistantError

MAX_GRAMMAR_CHARS = 1 << 20  # a grammar this big is refused before any parser sees it
DEADLINE_S = 30.0
REFUSED = 3  # the child's exit code when llama.cpp returned no sampler

# vocab None: llama.cpp parses a grammar without a model (token references, which JSON grammars never hold, need one)
_CHILD = f"""
import sys, llama_cpp
sampler = llama_cpp.llama_sampler_init_grammar(None, sys.stdin.buffer.read(), b"root")
if not sampler:
    sys.exit({REFUSED})
llama_cpp.llama_sampler_free(sampler)
"""


class GrammarError(AssistantError):
    """llama.cpp cannot use this grammar."""


def verify(grammar: str) -> None:
    """Return if llama.cpp's parser accepts ``grammar``; raise :class:`GrammarError` (one line) if not."""
    if len(grammar) > MAX_GRAMMAR_CHARS:
        raise GrammarError(f"the grammar is too large ({len(grammar):,} characters; at most {MAX_GRAMMAR_CHARS:,})")
    if problem := _verdict(grammar):
        raise GrammarError(problem)


@lru_cache(maxsize=64)
def _verdict(grammar: str) -> str:
    """ "" if llama.cpp accepts ``grammar``, else why not."""
    try:
        child = subprocess.run(
            [sys.executable, "-c", _CHILD], input=grammar.encode(), capture_output=True, timeout=DEADLINE_S
        )
    except subprocess.TimeoutExpired:
        return f"the grammar is too complex: llama.cpp did not finish reading it in {DEADLINE_S:.0f} s"
    except OSError as exc:
        return f"cannot check the grammar: {exc.strerror or exc}"
    if child.returncode == 0:
        return ""
    if child.returncode == REFUSED:
        return f"llama.cpp refused the grammar: {_reason(child.stderr)}"
    return f"llama.cpp failed reading the grammar (exit {child.returncode}): {_reason(child.stderr)}"


def _reason(stderr: bytes) -> str:
    """llama.cpp's own error line, without the grammar it prints after it."""
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    for line in lines:
        if "error parsing grammar:" in line:
            return line.split("error parsing grammar:", 1)[1].strip()[:300]
    return lines[-1][:300] if lines else "no reason given"
