"""Questions in a customer's own words, written by a small base model that ships with the project.

Templates ask for a fact by its label ("What is the phone number?"); people describe their situation ("I'm running
late, who do I ring?"). Gemma 3 270M (the ``gemma3-270m`` package, a base model: it continues text, it does not
follow instructions) continues a page of fact-sheet lines, each followed by questions customers asked about it, for
every claim of the persona's context. A line is kept when it is a question about that claim
(:func:`questions.problem`: it shares a word with it, does not give its answer away, is no repeat) and when the
claim is the one it finds among all the context's claims (:func:`round_trip`, with the sentence vectors document
search uses: a round-trip check). The claim's own sentence is the answer the student learns, so a question that
slips through costs a loose pairing, never an invented fact.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from distill_tools import topics
from distill_tools.facts import Fact
from distill_tools.questions import Question, problem

WRITER = "writer"  # Question.source of these questions
MODEL = "gemma3-270m"
SHOTS = """Each line of a fact sheet, followed by questions real customers asked that the line answers. Customers \
rarely use the sheet's words: they describe their situation.

Fact sheet line (Dough & Dome pizzeria): We're closed every Monday.
Customer questions:
- Can I pop in for a pizza on Monday?
- Which day of the week are you shut?
- I'm planning a birthday dinner this Monday, can we come to you?
- Are you open at the start of the week?

Fact sheet line (Harbourside Pool): Swimming lessons for children cost 12 dollars each.
Customer questions:
- How much do I pay for my daughter's swim class?
- My son wants to learn to swim, what will that set me back?
- What's the price of a kids' lesson?
- Are lessons for children expensive?

Fact sheet line (Dough & Dome pizzeria): Our head chef is Marguerite Oduya.
Customer questions:
- Who does the cooking there?
- The food was amazing, who should I thank in the kitchen?
- What's the name of your chef?

Fact sheet line (Harbourside Pool): Lockers need a 1 dollar coin, returned when you open them.
Customer questions:
- Do I need change for the lockers?
- I forgot my purse, can I still lock my bag away?
- Do I get my coin back from the locker?

Fact sheet line ({subject}): {claim}
Customer questions:
-"""


def write(facts: list[Fact], complete: Callable[[str], str], per_claim: int = 6, tries: int = 2) -> list[Question]:
    """Up to ``per_claim`` usable questions for every claim of ``facts``, from ``tries`` completions each (before
    :func:`round_trip`)."""
    subject = topics.subject(facts) or "our place"
    result: list[Question] = []
    seen: set[str] = set()
    for claim in dict.fromkeys(f.claim for f in facts):
        ids = [i for i, f in enumerate(facts) if f.claim == claim]
        kept = 0
        for _ in range(tries):
            for text in _lines(complete(SHOTS.format(subject=subject, claim=claim))):
                if kept < per_claim and problem(text, facts[ids[0]], seen) is None:
                    seen.add(text.lower())
                    result.append(_question(text, facts, ids))
                    kept += 1
    return result


def round_trip(written: list[Question], facts: list[Fact], embed: Callable[[list[str]], np.ndarray]) -> list[Question]:
    """The questions whose own claim is the nearest of all claims to them (``embed``: unit sentence vectors)."""
    if not written:
        return []
    claims = list(dict.fromkeys(f.claim for f in facts))
    nearest = (embed([q.text for q in written]) @ embed(claims).T).argmax(axis=1)
    return [q for q, n in zip(written, nearest) if claims[int(n)] == facts[q.facts[0]].claim]


def _lines(reply: str) -> list[str]:
    """The question lines of a completion that started after "- "."""
    return [re.sub(r"^\s*-\s*", "", line).strip() for line in ("-" + reply).splitlines() if line.strip()]


def _question(text: str, facts: list[Fact], ids: list[int]) -> Question:
    """A written question about a claim, answered with the claim's sentence; checkable when the claim has one value."""
    keyed = [i for i in ids if facts[i].key]
    answers = (tuple(facts[keyed[0]].answers()),) if len(keyed) == 1 else ()
    if text.split(" ", 1)[0].lower() in {"is", "are", "do", "does", "can", "could", "will", "should"}:
        answers = ()  # a yes/no question: its answer need not name the value
    return Question(text, tuple(ids), "written", WRITER, answers, facts[ids[0]].claim)


def completer(path: Path, seed: int = 0) -> Callable[[str], str]:
    """Sampled completions of ``path`` (a base model) in llama.cpp, up to a blank line."""
    from distill_tools import llama

    model = llama.open_model(path, n_ctx=1024, seed=seed)

    def complete(prompt: str) -> str:
        with llama.quiet():
            out = model(prompt, max_tokens=96, temperature=0.8, top_p=0.95, stop=["\n\n", "Fact sheet"])
        return str(out["choices"][0]["text"])

    return complete


def bundled(facts: list[Fact], per_claim: int, seed: int = 0) -> list[Question]:
    """Questions for ``facts`` from the bundled writer (loaded for this and freed after), round-trip checked."""
    from assistant.documents import embedding
    from assistant.models import registry

    complete = completer(registry.packaged_path(MODEL), seed)
    written = write(facts, complete, per_claim)
    del complete
    return round_trip(written, facts, embedding.default().embed)
