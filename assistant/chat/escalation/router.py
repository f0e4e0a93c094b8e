"""The router: answer on-device or escalate to the teacher, decided locally and cheaply.

Two signals, both computed on this machine with no network call:

* what kind of question it is (:func:`factual_score`): long-tail factual questions
  (names, dates, places, numbers: who / when / where / how many) are where small
  students fail; reasoning, code and chit-chat are where they do fine;
* the student's own confidence on a short draft of its answer (:func:`confidence`):
  the geometric-mean probability of the draft's tokens, from the engine's logprobs.

A question clearly not factual is answered on-device without a draft (no delay). Otherwise
the draft's tokens are kept: if the answer stays on-device they are its first tokens.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from assistant.config import EscalationSettings
from assistant.models.engine import Delta

# (pattern, weight): evidence for (+) or against (-) "long-tail factual".
_RULES: list[tuple[re.Pattern[str], float]] = [
    (re.compile(p, re.IGNORECASE), w)
    for p, w in [
        # asking for a name, a date, a place, a number
        (r"^(who|whom|whose)\b", 2.2),
        (r"^(when|where)\b", 1.8),
        (r"^(in )?(what|which) (year|century|decade|city|country|town|river|island|language|dynasty)\b", 2.4),
        (r"^which\b", 1.2),
        (r"^how (many|much|tall|long|deep|high|old|far|big|large|heavy)\b", 1.5),
        (r"^(name|list)\b", 1.6),
        (r"^(tell me|give me|i need|do you know|could you tell me)\b.*\b(who|when|where|date|year|name|birth)", 1.8),
        (r"\b(the )?(capital|population|currency|height|elevation|length|area|half-life|atomic number)\b", 1.6),
        (r"\b(melting|boiling) point\b|\bspeed of sound\b|\borbital period\b", 1.4),
        (
            r"\b(born|died|founded|invented|discovered|designed|composed|painted|directed|wrote|won|ruled|"
            r"signed|launched|opened|completed|inaugurated|dissolved|destroyed|succeeded|elected|created|"
            r"translated|named|voiced|played)\b",
            1.2,
        ),
        (
            r"\b(author|architect|founder|inventor|composer|president|king|queen|emperor|mayor|"
            r"prime minister|secretary-general|leader|singer|drummer|goalkeeper|actor|saint|engineer)\b",
            1.0,
        ),
        (r"\b(tallest|longest|largest|highest|deepest|oldest|first|last|second)\b", 0.8),
        (r"\b(in|of) (the )?(1[0-9]{3}|20[0-9]{2})\b", 1.0),
        (r"\b(nobel|oscar|prize|world cup|olympics|booker|super bowl|tour de france)\b", 0.8),
        (r"\b(record|symbol|flag|national|official)\b", 0.6),
        # reasoning, explanation, arithmetic
        (r"^(why|explain|describe|compare|summari[sz]e|prove|solve|convert|calculate|estimate)\b", -3.0),
        (r"\b(explain|step by step|difference between|pros and cons|trade-offs?|versus|vs\.?)\b", -2.0),
        (r"^how (do|does|can|should|would|could|to)\b", -2.5),
        (r"\b(what would happen|what makes|is it better|should i|how should)\b", -2.5),
        (r"\bif\b.*\b(then|how|what)\b|\bif (i|a|it|all|you)\b", -2.5),
        (r"\d+\s*[-+*/x×=]\s*\d+|\btimes\b|\bsum of\b|\bprobability\b|\bsequence\b|\bequation\b", -2.5),
        (r"\bwhat is (a|an)\b|\bwhat are (some|the steps)\b", -2.0),
        # code
        (
            r"\b(python|javascript|typescript|java|rust|go|golang|haskell|sql|bash|shell|css|html|regex|git|"
            r"docker(file)?|makefile|pandas|flask|c)\b",
            -2.5,
        ),
        (
            r"\b(function|class|method|code|bug|error|exception|compile|variable|loop|list|tuple|dict(ionary)?|"
            r"array|linked list|stack|queue|cache|api|script|unit test|decorator|closure|async|recursive|"
            r"complexity|data structure|database|virtual environment|profile|refactor|implement|parse)\b",
            -2.0,
        ),
        (r"[`{}\[\]();=<>]|\bdef |\breturn\b|\w+_\w+|\.\w{2,4}\b", -1.5),
        (r"^(write|implement|fix|refactor|rewrite|make up|make|help|create|suggest|translate)\b", -2.5),
        # chit-chat and creative requests
        (r"^(hi|hello|hey|good (morning|evening|night)|thanks|thank you|bye|let's)\b", -3.0),
        (r"\b(i'm|i am|i feel|i had|i just|i can't|my|me|you|your|yourself|we)\b", -1.2),
        (
            r"\b(joke|poem|haiku|limerick|story|riddle|toast|quote|message|email|note|card|advice|pep talk|"
            r"ideas|recommend|hobbies|vacation|dinner|favou?rite)\b",
            -2.0,
        ),
    ]
]
_BIAS = -1.0
_PROPER_NOUN = re.compile(r"(?<!^)(?<![.!?] )\b[A-Z][a-z]+(?:[-'][A-Za-z]+)?\b")


@dataclass
class Route:
    """One routing decision, stored with the answer (``messages.route``) and shown in the UI."""

    escalate: bool
    reason: str
    policy: str
    kind: str = ""  # factual | other
    factual: float = 0.0  # how factual the question looks, 0..1
    confidence: float | None = None  # the student's draft confidence, 0..1 (None: no draft)
    entropy: float | None = None  # mean token entropy of the draft, nats
    draft_tokens: int = 0
    router_ms: float = 0.0  # the router's own computation (classifier + scoring)

    def to_dict(self) -> dict[str, object]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def factual_score(question: str) -> float:
    """How much the question looks like a long-tail factual one, 0..1 (a logistic over cue weights)."""
    text = " ".join(question.strip().split())
    total = _BIAS
    for pattern, weight in _RULES:
        if pattern.search(text):
            total += weight
    total += 0.5 * min(len(_PROPER_NOUN.findall(text)), 3)
    return 1.0 / (1.0 + math.exp(-total))


def confidence(draft: Sequence[Delta]) -> tuple[float, float]:
    """(confidence, mean entropy) of a draft: confidence is exp(mean token logprob), 0..1."""
    if not draft:
        return 1.0, 0.0
    mean_logprob = sum(d.logprob for d in draft) / len(draft)
    return math.exp(mean_logprob), sum(d.entropy for d in draft) / len(draft)


class Router:
    """Applies the ``[escalation]`` thresholds to a question and (optionally) a draft."""

    def __init__(self, settings: EscalationSettings) -> None:
        self.settings = settings

    def needs_draft(self, question: str) -> bool:
        """A draft is only worth its delay when the question might be escalated (it looks factual)."""
        return factual_score(question) >= self.settings.min_factual

    def decide(self, question: str, policy: str, draft: Sequence[Delta] | None = None) -> Route:
        """Escalate a factual-looking question on which the student's draft is not confident."""
        started = time.perf_counter()
        factual = factual_score(question)
        route = Route(escalate=False, reason="", policy=policy, factual=factual)
        route.kind = "factual" if factual >= self.settings.min_factual else "other"
        if draft is not None:
            route.confidence, route.entropy = confidence(draft)
            route.draft_tokens = len(draft)
        if route.kind != "factual":
            route.reason = "answered on-device: not a factual question"
        elif route.confidence is None:
            route.reason = "answered on-device: no draft to judge"
        elif route.confidence < self.settings.min_confidence:
            route.escalate = True
            route.reason = f"escalated: low confidence {route.confidence:.2f} on a factual question"
        else:
            route.reason = f"answered on-device: confident ({route.confidence:.2f}) on a factual question"
        route.router_ms = (time.perf_counter() - started) * 1000
        return route
