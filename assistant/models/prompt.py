"""The prompt: a conversation rendered with the model's chat template, fitted into its context window.

A history too long for the window loses its oldest turns (the system prompt is kept), then the question
is cut; the turn's stats count what was left out and say so in a note.
"""

from __future__ import annotations

from assistant.models.llama_model import EngineError, Model
from assistant.models.stats import Stats

Messages = list[dict[str, str]]


def render(model: Model, messages: Messages, continue_final: bool) -> str:
    """The prompt text; with ``continue_final`` the last (assistant) message opens the model's turn."""
    if not continue_final:
        return model.template.render(messages)
    return model.template.render(messages[:-1]) + messages[-1]["content"]


def fit(model: Model, messages: Messages, reserve: int, stats: Stats, continue_final: bool = False) -> str:
    """The prompt, leaving ``reserve`` tokens of the window for the answer; what was left out goes in ``stats``."""
    text = _fitted(model, messages, model.n_ctx - reserve, stats, continue_final)
    if stats.dropped_messages:
        stats.notes.append(
            f"{stats.dropped_messages} oldest message(s) left out to fit the {model.n_ctx}-token context"
        )
    if stats.truncated_chars:
        stats.notes.append(f"your message was cut by {stats.truncated_chars} characters to fit the context")
    return text


def _fitted(model: Model, messages: Messages, budget: int, stats: Stats, continue_final: bool) -> str:
    """Render the prompt, dropping the oldest turns (system kept) until it fits ``budget`` tokens."""
    messages = [dict(m) for m in messages]
    keep = 2 if continue_final else 1  # the question and, when continuing, the partial answer
    while True:
        text = render(model, messages, continue_final)
        count = len(model.tokenize(text, first=True))
        if count <= budget:
            return text
        system = 1 if messages and messages[0]["role"] == "system" else 0
        if len(messages) - system > keep:
            del messages[system]
            stats.dropped_messages += 1
            continue
        last = messages[-keep]  # the question: a partial answer being continued is never cut
        # cut in proportion to this text's own characters per token (code and CJK pack fewer than prose)
        overflow_chars = len(last["content"]) - int(len(last["content"]) * budget / count * 0.95)
        if overflow_chars >= len(last["content"]):
            raise EngineError(f"the prompt does not fit the model's {model.n_ctx}-token context even alone; shorten it")
        stats.truncated_chars += overflow_chars
        last["content"] = last["content"][: len(last["content"]) - overflow_chars]
