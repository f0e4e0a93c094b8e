"""Training and held-out prompts for distilling a persona, made from its own context.

A fact learnt from one phrasing does not carry over to others (Allen-Zhu & Li, Physics of Language
Models 3.1), so every sentence of the context is asked about in several phrasings: templates over
the sentence's subject ("What do you know about the office wifi password?") and a cloze that recalls
the sentence itself. One phrasing per fact is kept out of training, for the held-out evaluation;
its checkable answer is the sentence's most distinctive word (a number, a name). Questions about
the persona itself ("Who are you?") carry its system prompt. A replay set of general prompts,
answered by the base model without context, keeps the student's general ability.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

# verbs that split a fact sentence into a subject and what is said about it
VERBS = (
    "is|are|was|were|has|have|had|costs?|opens?|closes?|starts?|ends?|begins?|lives?|works?|uses?|runs?|takes?|"
    "means?|meets?|belongs?|contains?|holds?|requires?|supports?|needs?|must|should|can|cannot|will|gets?|goes?|"
    "comes?|speaks?|likes?|loves?|prefers?|owns?|leads?|manages?|pays?|charges?|ships?|arrives?|leaves?|happens?|"
    "falls?|sits?|stands?|lies?|equals?|weighs?|measures?|lasts?|accepts?|allows?|includes?"
)
COPULA = "is|are|was|were"  # tried first: "The support phone number is …" is not about "supporting"
SPLITS = [
    re.compile(rf"^(?P<subject>[^,;:]{{3,90}}?)\s+(?P<verb>{verbs})\s+(?P<rest>.{{2,}})$", re.IGNORECASE)
    for verbs in (COPULA, VERBS)
]
TEMPLATES = (
    "What do you know about {subject}?",
    "Tell me about {subject}.",
    "What can you tell me about {subject}?",
    "I have a question about {subject}. What should I know?",
    "Quick question: {subject}?",
    "Remind me about {subject}, please.",
    "Do you have any information on {subject}?",
)
WHAT_TEMPLATE = "What {verb} {subject}?"  # for "X is Y" sentences, the most natural question
CLOZE_TEMPLATE = "Complete this sentence: {subject} {verb} …"
IDENTITY = (
    "Who are you?",
    "What can you help me with?",
    "Introduce yourself.",
    "Hello!",
    "What are your rules?",
    "How should I ask you things?",
    "What do you know?",
    "Hi, what is your job?",
)
STOPWORDS = set(
    "a an the of to in on at for and or but with by from as is are was were be it its this that our your "
    "their his her my we you they he she i".split()
)


@dataclass
class Fact:
    sentence: str
    subject: str
    verb: str
    rest: str

    def answers(self) -> list[str]:
        """Accepted answers: the most distinctive word of what is said (a number or a name), else its last word."""
        words = [w.strip(".,;:!?()\"'") for w in self.rest.split()]
        words = [w for w in words if w]
        for word in words:
            if any(ch.isdigit() for ch in word) or (word[:1].isupper() and word.lower() not in STOPWORDS):
                return [word]
        content = [w for w in words if w.lower() not in STOPWORDS]
        return [content[-1]] if content else [words[-1]] if words else []


@dataclass
class PromptSet:
    train: list[dict[str, str]] = field(default_factory=list)  # records for the context teacher
    heldout: list[dict[str, object]] = field(default_factory=list)  # {"prompt", "answers"?}: never trained on
    facts: list[Fact] = field(default_factory=list)


def sentences(text: str) -> list[str]:
    """The statements of a context: bullet and numbered list markers dropped, headings and short lines skipped."""
    result = []
    for line in text.splitlines():
        line = re.sub(r"^\s*(?:[-*+•]|\d+[.)])\s+", "", line).strip()
        if not line or line.startswith(("#", "```", "|")):
            continue
        for part in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9\"'])", line):
            part = part.strip()
            if len(part.split()) >= 3:
                result.append(part)
    return result


def fact_of(sentence: str) -> Fact | None:
    match = next((m for split in SPLITS if (m := split.match(sentence.rstrip(".!")))), None)
    if not match:
        return None
    subject = match["subject"].strip()
    words = subject.split()
    determiner = words[0] in ("The", "A", "An", "Our", "Your", "My", "This", "That", "These", "Those", "Its")
    if len(words) > 1 and (determiner or words[1][:1].islower() and not words[0].isupper()):  # mid-sentence case
        subject = " ".join([words[0].lower(), *words[1:]])
    return Fact(sentence, subject, match["verb"].lower(), match["rest"].strip())


def phrasings(fact: Fact) -> list[str]:
    """Every question the templates make about one fact (the first is the most natural)."""
    result = [WHAT_TEMPLATE.format(verb=fact.verb, subject=fact.subject)] if fact.verb in ("is", "are") else []
    result += [t.format(subject=fact.subject) for t in TEMPLATES]
    return result


def build(
    context_sentences: list[str],
    user_prompts: list[dict[str, str]],
    per_fact: int,
    seed: int = 0,
    heldout_user: float = 0.1,
    grounded: bool = True,
) -> PromptSet:
    """Training prompts (``per_fact`` phrasings + a cloze per fact, identity questions, the user's) and held-out ones.

    For fact i the held-out phrasing is a different template than its training ones, rotating over
    the templates so every template is also trained on with other facts. The teacher answers the
    first phrasing itself; with ``grounded`` the other phrasings and the cloze carry the sentence as
    their answer (the teacher's logits are still taken on it): asked vaguely ("Tell me about the
    cafeteria"), the prompted teacher often invents details instead of quoting its context."""
    rng = random.Random(seed)
    prompts = PromptSet()
    for i, sentence in enumerate(context_sentences):
        fact = fact_of(sentence)
        if fact is None:
            prompts.train.append({"prompt": f"What does your reference say about this: {sentence}"})
            continue
        prompts.facts.append(fact)
        options = phrasings(fact)
        held = options[i % len(options)] if fact.verb not in ("is", "are") else options[1 + i % (len(options) - 1)]
        prompts.heldout.append({"prompt": held, "answers": fact.answers()})
        rest = [p for p in options if p != held]
        chosen = rest[1:] and rng.sample(rest[1:], min(max(0, per_fact - 1), len(rest) - 1))
        answer = {"answer": sentence} if grounded else {}
        prompts.train.append({"prompt": rest[0]})
        prompts.train += [{"prompt": p, **answer} for p in chosen]
        prompts.train.append({"prompt": CLOZE_TEMPLATE.format(subject=fact.subject, verb=fact.verb), **answer})
    identity = list(IDENTITY)
    rng.shuffle(identity)
    prompts.train += [{"prompt": p} for p in identity[:-2]]
    prompts.heldout += [{"prompt": p} for p in identity[-2:]]
    users = list(user_prompts)
    rng.shuffle(users)
    n_held = int(len(users) * heldout_user) if len(users) >= 10 else 0
    prompts.heldout += [dict(r) for r in users[:n_held]]
    prompts.train += users[n_held:]
    return prompts
