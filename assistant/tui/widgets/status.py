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
    policy: str = "never"
    escalated: bool = False
    persona: str = ""  # the persona chatting, if any


def status_line(info: StatusInfo, width: int = 80) -> Content:
    """One line. When narrow, TTFT, speed and context are dropped, then the model name is shortened."""
    escalation = ESCALATION_LABELS.get(info.policy, info.policy)
    if info.escalated:
        escalation += " · last answer escalated"
    parts = [info.state] if info.state else []
    if info.n_ctx:
        parts.append(f"ctx {info.context_used}/{info.n_ctx}")
    if info.tokens_per_s or info.ttft_s:
        parts += [f"{info.tokens_per_s:.1f} tok/s", f"TTFT {info.ttft_s:.2f}s"]
    model = info.model or "no model"
    if info.persona:
        model = f"{info.persona} ({model})"
    fixed = lambda: sum(len(p) + 3 for p in parts) + len(escalation) + 5  # noqa: E731
    while len(parts) > 1 and fixed() + min(len(model), 16) > width:
        parts.pop()
    room = max(8, width - fixed())
    if len(model) > room:
        model = model[: room - 1] + "…"
    middle = "".join(f" │ {p}" for p in parts)
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
