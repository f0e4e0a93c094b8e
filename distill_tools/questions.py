"""Questions about a persona's facts, in many wordings, from templates or written by the teacher.

A fact learnt from one wording does not carry over to others (Allen-Zhu & Li, Physics of Language Models
3.1), so each fact is asked about at least ten ways: directly, reworded, indirectly, as a yes/no question
(true, or with a wrong value to correct), together with another fact, conversationally, as the second turn
of a conversation, and as a cloze. A labelled fact ("Phone: 555-0143") is also asked as people ask it, in
words its label does not use ("How can I call you?", :mod:`topics`); the wordings above wrap those forms in
turn, and the given answer is a sentence that names the subject. Questions the context cannot answer teach
the student to say it does not know. A capable teacher writes questions in its own words
(:func:`teacher_questions`: asked, checked, dropped when they fail); the templates are the fallback. Every
question records its source (``template`` or ``teacher``) and its template's ``wording``, so :func:`split`
can hold out questions no generator of the training questions made.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from distill_tools import topics
from distill_tools.facts import COMMON, Fact

TEMPLATE, TEACHER = "template", "teacher"
DONT_KNOW = "I don't know: {doc} does not say."
# wordings of the template generator; the second of each pair is the one held out when only templates exist
WORDINGS = {
    "direct": ("{wh}", "Can you tell me: {wh_l}", "Please tell me: {wh_l}"),
    "reworded": ("Do you happen to know {wh_l}", "I was wondering, {wh_l}", "Any idea {wh_l}"),
    "indirect": ("Someone asked me this and I wasn't sure: {wh_l}", "I need to get this right for a form. {wh}"),
    "conversational": ("hey, quick one: {wh_l}", "Sorry to bother you! {wh} Thanks.", "ok so {wh_l}"),
    "multi-turn": ("And {wh_l}", "One more thing: {wh_l}"),
}
HELD_WORDINGS = {f"{kind}-1" for kind in WORDINGS}  # never trained on when only templates exist
WH = {
    "year": "what year",
    "time": "what time",
    "weekday": "which day",
    "email": "what address",
    "value": "what",
    "name": "what",
    "number": "what number",
}
MONEY = re.compile(
    r"^[\d.,]+\s*(?:euros?|dollars?|pounds?|eur|usd)$|^\w+(?:-\w+)?\s+(?:euros?|dollars?|pounds?)$", re.I
)
COLOURS = re.compile(r"^(?:red|orange|yellow|green|blue|purple|violet|pink|brown|black|white|grey|gray|silver|gold)$")
PRONOUNS = {"our": "your", "we": "you", "us": "you", "ours": "yours", "you": "I", "your": "my", "yours": "mine"}
UNKNOWN_PERSON = ("How old is {name}?", "What is {name}'s favourite food?", "Where did {name} go to school?")
UNKNOWN_GENERAL = (
    "Who designed your logo?",
    "What was your revenue last year?",
    "Which bank do you use?",
    "Do you have a loyalty card?",
    "What is the name of your cleaner?",
)
TEACHER_PROMPT = (
    "Here is a passage:\n\n{passage}\n\nWrite {n} different questions that people might really ask, each answered "
    'by this sentence of the passage: "{claim}"\nUse your own words, not the sentence\'s; vary them: a plain '
    "question, a casual one, one about a situation, a yes/no question. One question per line, nothing else."
)


@dataclass(frozen=True)
class Question:
    """A question about ``facts`` (indices; () = about nothing the context says)."""

    text: str
    facts: tuple[int, ...]
    kind: str  # direct, natural, reworded, indirect, yesno, multi, conversational, multi-turn, cloze, unknown, teacher
    source: str  # template | teacher
    answers: tuple[tuple[str, ...], ...] = ()  # per checked fact, its accepted answers (all groups must appear)
    grounded: str = ""  # the answer made from the context's own words ('' = the teacher's to write)
    history: tuple[tuple[str, str], ...] = ()  # earlier turns, (role, text)
    wording: str = ""  # the template wording, e.g. "direct-0" ('' for the teacher's)


@dataclass
class Split:
    """Training questions and held-out ones that no generator of the training questions made (``source`` says)."""

    train: list[Question] = field(default_factory=list)
    heldout: list[Question] = field(default_factory=list)
    source: str = ""


def swap_person(text: str) -> str:
    """The context's voice as the asker's: "our office" → "your office", "you may" → "I may"."""
    swapped = re.sub(
        r"\b(our|we|us|ours|you|your|yours)\b",
        lambda m: _case(PRONOUNS[m.group(0).lower()], m.group(0)),
        text,
        flags=re.I,
    )
    return re.sub(r"\bI are\b", "I am", re.sub(r"\bI were\b", "I was", swapped))


def _case(word: str, like: str) -> str:
    return word[:1].upper() + word[1:] if like[:1].isupper() and word != "I" else word


def clause(fact: Fact) -> str:
    """The part of the claim that holds the key: its clause, when that reads on its own, else the whole claim."""
    text = fact.claim.split(":", 1)[1].strip() if fact.label else fact.claim
    if not fact.key:
        return text.rstrip(".!")
    for piece in re.split(r";\s*|,\s+(?=(?:and|but|while|so)\s)", text):
        if fact.key in piece:
            piece = re.sub(r"^(?:and|but|while|so)\s+", "", piece.strip()).rstrip(".!")
            if len(piece.split()) >= 4 and not re.match(r"(?:which|who|whose|where|when)\b", piece):
                return piece
    return text.rstrip(".!")


def wh_question(fact: Fact) -> str:
    """The fact asked directly: "What is the phone?" for a labelled bullet, else the clause with its key questioned
    ("Who founded the company in 2014?", "Full-time staff receive how many days of annual leave?")."""
    if fact.label:
        label = fact.label[:1].lower() + fact.label[1:]
        if person(fact):
            return f"Who is the {label}?"
        if not label.split()[-1].endswith("ed"):
            return f"What is the {label}?"
        return _sentence(f"{_wh(fact)} was it {label}?") if fact.key else f"What about the {label}?"
    text = clause(fact)
    if not fact.key or fact.key not in text:
        return f"What does your reference say about this: {swap_person(text)}?"
    start = text.index(fact.key)
    before, after = text[:start], text[start + len(fact.key) :]
    copula = re.fullmatch(r"(?P<subject>.{3,80}?)\s+(?P<verb>is|are)\s+", before)
    if copula and not after.strip(" .!"):  # "The office wifi password is tulip42" → "What is the office wifi password?"
        subject = copula["subject"]
        subject = subject if subject.split(" ", 1)[0] in fact.key.split() else subject[:1].lower() + subject[1:]
        return f"What {copula['verb']} {swap_person(subject)}?"
    wh = _wh(fact)
    if not before.strip():
        return _sentence(f"{wh[:1].upper()}{wh[1:]}{swap_person(after)}?")
    return _sentence(f"{swap_person(before)}{wh}{swap_person(after)}?")


def person(fact: Fact) -> bool:
    """Whether a name key names a person: two capitalised words, led by "by", "under", "lead is", or doing a deed."""
    key = fact.key
    if fact.kind != "name" or len(key.split()) != 2 or key != key.title() or key not in fact.claim:
        return False
    before, after = fact.claim.split(key, 1)
    return bool(
        re.search(r"(?:\bby|\bunder|\blead is|\bwhose lead is|\bowner|\bbaker|\bchief|:)\s*$", before)
        or re.match(r"\s+(?:founded|leads|owns|runs|manages|is our|is the)\b", after)
    )


def _wh(fact: Fact) -> str:
    key, kind = fact.key, fact.kind
    if person(fact):
        return "who"
    if MONEY.match(key):
        return "how much"
    if kind == "number" and len(key.split()) == 2:
        return f"how many {key.split()[1]}"
    if kind == "value" and COLOURS.match(key.lower()):
        return "what colour"
    return WH.get(kind, "what")


def _sentence(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text[:1].upper() + text[1:]


def _lower(question: str, keep: set[str]) -> str:
    first = question.split(" ", 1)[0]
    return question if first in keep or first.isupper() else question[:1].lower() + question[1:]


def template_questions(facts: list[Fact], doc: str = "my reference", seed: int = 0) -> list[Question]:
    """Every template question about ``facts`` (about fifteen per fact with a key), and the unanswerable ones."""
    rng = random.Random(seed)
    keep = {w for f in facts for w in f.key.split()} | {"I"}
    asked = [wh_question(f) for f in facts]
    name = topics.subject(facts)
    result: list[Question] = []
    for i, fact in enumerate(facts):
        answers = (tuple(fact.answers()),) if fact.key else ()
        wh, claim = asked[i], fact.claim
        natural, sentence = _natural(fact, name)
        said = sentence or claim  # the answer given to every wording but the teacher's own (direct-0)
        result += [
            Question(q, (i,), "natural", TEMPLATE, answers, said, (), f"natural-{n}") for n, q in enumerate(natural)
        ]
        forms = itertools.cycle([wh, *natural])  # the wrappers below take these in turn
        for kind, wordings in WORDINGS.items() if fact.key else [("direct", WORDINGS["direct"][:1])]:
            for n, wording in enumerate(wordings):
                asking = next(forms)
                values = {"wh": asking, "wh_l": _lower(asking, keep)}
                history: tuple[tuple[str, str], ...] = ()
                if kind == "multi-turn":
                    other = _other(facts, i, rng)
                    if other is None:
                        continue
                    history = (("user", asked[other]), ("assistant", facts[other].claim))
                text = _sentence(wording.format(**values))
                result.append(Question(text, (i,), kind, TEMPLATE, answers, said, history, f"{kind}-{n}"))
        result += _yes_no(facts, i, answers, rng)
        if fact.key and (cut := claim.find(fact.key)) > 8:
            result.append(
                Question(
                    f"Complete this: {claim[:cut].rstrip()} …", (i,), "cloze", TEMPLATE, answers, claim, (), "cloze"
                )
            )
        other = _other(facts, i, rng)
        if other is not None and fact.key:
            both = answers + ((tuple(facts[other].answers()),) if facts[other].key else ())
            text = f"{wh} And {_lower(asked[other], keep)}"
            grounded = f"{said} {facts[other].claim}" if facts[other].claim != claim else said
            result.append(Question(text, (i, other), "multi", TEMPLATE, both, grounded, (), "multi"))
    result += unknown_questions(facts, doc)
    seen: set[str] = set()
    return [q for q in result if not (q.text in seen or seen.add(q.text))]  # type: ignore[func-returns-value]


def _natural(fact: Fact, name: str) -> tuple[list[str], str]:
    """A labelled fact's questions as people put them, and its answer as a sentence ('' = none fits)."""
    if not (fact.label and fact.key):
        return [], ""
    value = fact.claim.split(":", 1)[1].strip()
    return topics.questions(fact.label, value, name), topics.answer(fact.label, value, name)


def _other(facts: list[Fact], i: int, rng: random.Random) -> int | None:
    """Another fact with a key, from another claim (seeded)."""
    choices = [j for j, f in enumerate(facts) if j != i and f.key and f.claim != facts[i].claim]
    return rng.choice(choices) if choices else None


def _yes_no(facts: list[Fact], i: int, answers: tuple[tuple[str, ...], ...], rng: random.Random) -> list[Question]:
    """ "Is it true that …?" about the claim as stated (yes) and with another fact's value of the same kind (no)."""
    fact = facts[i]
    value = fact.claim.split(":", 1)[1].strip().rstrip(".!") if fact.label else ""
    said = swap_person(f"the {fact.label.lower()} is {value}" if fact.label else clause(fact))
    said = said[:1].lower() + said[1:] if said.split(" ", 1)[0] not in fact.key.split() else said
    result = [
        Question(f"Is it true that {said}?", (i,), "yesno", TEMPLATE, (("yes",),), f"Yes. {fact.claim}", (), "yes")
    ]
    wrong = [f.key for f in facts if f.kind == fact.kind and f.key and f.key != fact.key and f.key not in fact.claim]
    if fact.key and wrong and fact.key in said:
        false = said.replace(fact.key, rng.choice(wrong), 1)
        result.append(Question(f"Is it true that {false}?", (i,), "yesno", TEMPLATE, answers, f"No. {fact.claim}"))
    return result


def unknown_questions(facts: list[Fact], doc: str) -> list[Question]:
    """Questions about things the context does not mention (the words they ask about appear nowhere in it)."""
    text = " ".join({f.passage for f in facts}).lower()
    people = list(dict.fromkeys(f.key for f in facts if person(f)))[:2]
    candidates = [t.format(name=p) for p in people for t in UNKNOWN_PERSON] + list(UNKNOWN_GENERAL)
    refusal = DONT_KNOW.format(doc=doc)
    result = []
    for n, candidate in enumerate(candidates):
        asked = {re.sub(r"(?:'s)?\W*$", "", w.lower()) for w in candidate.split()} - COMMON
        asked -= set(" ".join(people).lower().split())
        if not any(re.search(rf"\b{re.escape(w)}\b", text) for w in asked if len(w) > 3):
            result.append(Question(candidate, (), "unknown", TEMPLATE, (), refusal, (), f"unknown-{n % 2}"))
    return result


def teacher_questions(
    facts: list[Fact], ask: Callable[[str], str], per_claim: int = 10, probe: int = 2
) -> tuple[list[Question], str]:
    """Questions the teacher writes in its own words, per claim, each checked (:func:`problem`); and a line on how
    it went. The first ``probe`` claims of six words or more test it: a teacher that gives fewer than half the
    ``per_claim`` questions asked for there writes none (the templates stand in; SmolLM2-135M repeats one line or
    drifts off the claim)."""
    claims = list(dict.fromkeys(f.claim for f in facts))
    tried = [c for c in claims if len(c.split()) >= 6][:probe]  # the probe: claims with something to ask about
    claims = tried + [c for c in claims if c not in tried]
    result: list[Question] = []
    kept = 0
    for n, claim in enumerate(claims):
        ids = [i for i, f in enumerate(facts) if f.claim == claim]
        reply = ask(TEACHER_PROMPT.format(passage=facts[ids[0]].passage, n=per_claim, claim=claim))
        seen = {q.text.lower() for q in result}
        for line in reply.splitlines():
            text = re.sub(r"^\s*(?:[-*•]|\d+[.)]|Q\d*[:.])\s*", "", line).strip().strip('"')
            if problem(text, facts[ids[0]], seen) is None:
                seen.add(text.lower())
                result.append(_teacher_question(text, facts, ids))
                kept += 1
        if n + 1 == probe and kept < probe * per_claim / 2 and len(claims) > probe:
            return [], f"the teacher wrote {kept} usable questions for its first {probe} claims: templates only"
    return result, f"the teacher wrote {len(result)} usable questions for {len(claims)} claims"


def _teacher_question(text: str, facts: list[Fact], ids: list[int]) -> Question:
    """A teacher's question: about the claim's facts whose key it does not give away (checked when a wh-question)."""
    about = tuple(i for i in ids if not facts[i].key or facts[i].key.lower() not in text.lower()) or tuple(ids)
    yes_no = text.split(" ", 1)[0].lower() in AUXILIARIES
    answers = () if yes_no else tuple(tuple(facts[i].answers()) for i in about[:1] if facts[i].key)
    return Question(text, about, "teacher", TEACHER, answers, facts[ids[0]].claim)


AUXILIARIES = set("is are was were do does did can could may might will would shall should has have had am".split())


def problem(text: str, fact: Fact, seen: set[str]) -> str | None:
    """Why a teacher's line is no usable question about ``fact`` (None: usable)."""
    words = re.findall(r"[\w'-]+", text.lower())
    if not text.endswith("?") or not 3 <= len(words) <= 40:
        return "not a question"
    if text.lower() in seen:
        return "a repeat"
    if text.rstrip("?").lower() in fact.claim.lower():
        return "the claim itself"
    claim = {w for w in re.findall(r"[\w'-]+", fact.claim.lower()) if len(w) > 2} - COMMON
    if not (set(words) - COMMON) & claim:
        return "off the claim's topic"
    if fact.key and words[0] not in AUXILIARIES and fact.key.lower() in text.lower() and len(fact.key) > 3:
        return "gives its answer away"
    return None


def split(questions: list[Question], seed: int = 0, per_fact: int = 2) -> Split:
    """Training questions and a disjoint held-out set, at most ``per_fact`` a fact (multi-turn ones are not held out).

    With teacher-written questions, training uses those (and the template questions the context cannot answer)
    and the template ones about facts are held out: a generator the training never saw. Templates only: the held-out
    questions use wordings (``HELD_WORDINGS``) no training question uses, which is weaker, as ``source`` says."""
    rng = random.Random(seed)
    if any(q.source == TEACHER for q in questions):
        train = [q for q in questions if q.source == TEACHER or q.kind == "unknown"]
        pool = [q for q in questions if q.source == TEMPLATE and q.kind != "unknown"]
        source = "template questions (training used the teacher's)"
    else:
        held = {q.wording for q in questions if q.wording in HELD_WORDINGS} | {"unknown-1"}
        train = [q for q in questions if q.wording not in held]
        pool = [q for q in questions if q.wording in held]
        source = "template wordings never trained on (the same generator as training: weaker than a disjoint source)"
    pool = [q for q in pool if q.kind != "multi-turn" and q.answers or q.kind == "unknown"]
    rng.shuffle(pool)
    count: dict[tuple[int, ...], int] = {}
    heldout = []
    for q in pool:
        if count.get(q.facts, 0) < per_fact:
            count[q.facts] = count.get(q.facts, 0) + 1
            heldout.append(q)
    return Split(train, heldout, source)


def per_fact(questions: list[Question], facts: list[Fact]) -> float:
    """Mean questions per checkable fact (each fact a question names counts it)."""
    keyed = [i for i, f in enumerate(facts) if f.key]
    counts = {i: 0 for i in keyed}
    for q in questions:
        for i in q.facts:
            if i in counts:
                counts[i] += 1
    return sum(counts.values()) / len(counts) if counts else 0.0


def sample(questions: list[Question], per_fact: int, seed: int = 0) -> list[Question]:
    """At most about ``per_fact`` questions a fact, taking the kinds in turn (seeded); those about nothing the context
    says are all kept. A question about two facts counts for both."""
    rng = random.Random(seed)
    chosen: dict[str, Question] = {q.text: q for q in questions if not q.facts}
    counts: dict[int, int] = {}
    by_fact: dict[int, list[Question]] = {}
    for q in questions:
        for i in q.facts:
            by_fact.setdefault(i, []).append(q)
    for i, pool in sorted(by_fact.items()):
        kinds: dict[str, list[Question]] = {}
        for q in pool:
            kinds.setdefault(q.kind, []).append(q)
        for group in kinds.values():
            rng.shuffle(group)
        order = sorted(kinds, key=lambda k: (k != "direct", k))
        while counts.get(i, 0) < per_fact and any(kinds.values()):
            for kind in order:
                if kinds[kind] and counts.get(i, 0) < per_fact:
                    q = kinds[kind].pop()
                    if q.text not in chosen:
                        chosen[q.text] = q
                        for j in q.facts:
                            counts[j] = counts.get(j, 0) + 1
    return list(chosen.values())
