"""What the `assistant serve` tests share: a greedy streamed answer from the packaged model, read whole."""

from __future__ import annotations

from typing import Any

import openai
from openai.types.chat import ChatCompletionChunk

MODEL = "smollm2-135m"


def stream_chunks(
    sdk: openai.OpenAI, messages: list[Any], max_tokens: int, **request: Any
) -> list[ChatCompletionChunk]:
    """Every chunk of a streamed, greedy answer by ``MODEL`` (``request``: more of the request's fields)."""
    stream = sdk.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=max_tokens, temperature=0, stream=True, **request
    )
    return list(stream)
