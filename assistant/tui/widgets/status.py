"""The status bar: model, context used, last answer's speed, escalation state."""

from __future__ import annotations

from dataclasses import dataclass

from textual.content import Content
from textual.widgets import Static

ESCALATION_LABELS = {"never": "on-device only", "ask": "escalation: ask", "auto": "escalation: auto"}


@dataclass
class StatusInfo:
    model: str = ""
    state: str = ""  # loading… / generating… / swapping… / empty when idle
    context_used: int = 0
    n_ctx: int = 0
    tokens_per_s: float = 0.0
    ttft_s: float = 0.0
    draft_acceptance: float | None = None  # share of prompt-lookup drafted tokens accepted; None: nothing drafted
    policy: str = "never"
    escalated: bool = False
    persona: str = ""  # the persona chatting, if any
    base_model: bool = False  # the model is a base (completion) model, not tuned for chat


def status_line(info: StatusInfo, width: int = 80) -> Content:
    """One line. When narrow, the draft acceptance goes first, then TTFT, the context, the speed; then the model name
    is shortened.

    The last answer's speed and TTFT are not shown while an answer is being generated (they would be stale),
    nor when there is no figure (never "0.0 tok/s")."""
    escalation = ESCALATION_LABELS.get(info.policy, info.policy)
    if info.escalated:
        escalation += " · last answer escalated"
    parts: list[tuple[int, str]] = []  # (priority: the lowest is dropped first, text), in display order
    if info.state:
        parts.append((9, info.state))
    if info.base_model:
        parts.append((8, "⚠ base model, not chat"))
    if info.n_ctx:
        parts.append((2, f"ctx {info.context_used}/{info.n_ctx}"))
    if not info.state.startswith("generating"):
        if info.tokens_per_s:
            parts.append((3, f"{info.tokens_per_s:.1f} tok/s"))
        if info.ttft_s:
            parts.append((1, f"TTFT {info.ttft_s:.2f}s"))
        if info.draft_acceptance is not None:
            parts.append((0, f"draft {info.draft_acceptance:.0%}"))
    model = info.model or "no model"
    if info.persona:
        model = f"{info.persona} ({model})"
    fixed = lambda: sum(len(p) + 3 for _, p in parts) + len(escalation) + 5  # noqa: E731
    while len(parts) > 1 and fixed() + min(len(model), 16) > width:
        parts.remove(min(parts, key=lambda part: part[0]))
    room = max(8, width - fixed())
    if len(model) > room:
        model = model[: room - 1] + "…"
    middle = "".join(f" │ {p}" for _, p in parts)
    return Content.assemble((f" {model}", "bold"), middle, (f" │ {escalation} ", "bold"))


class StatusBar(Static):
    """Renders a :class:`StatusInfo`; call :meth:`show` to change it."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.info = StatusInfo()

    def show(self, **changes: object) -> None:
        for key, value in changes.items():
            setattr(self.info, key, value)
        self.refresh()

    def render(self) -> Content:
        return status_line(self.info, self.size.width or 80)
