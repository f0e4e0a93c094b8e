"""The facts of a persona's context, from bullets and from prose, each with the passage it came from.

A *passage* is a short focused context: a prose paragraph, or one bullet under its heading. Every sentence
of a passage (every item of a list) is a *claim*; a claim states one fact per distinctive span it holds (its
*key*: a number, a time, a name, an address), so a prose sentence such as "Odile founded the company in
2014 in Carrow Bay" gives three facts about one claim. A claim with no distinctive span is still one fact,
learnt but not checkable. A ``Label: value`` bullet is about its label ("Phone: 555-0143").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NUMBER_WORDS = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|"
    "eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|thousand"
)
COLOURS = "red|orange|yellow|green|blue|purple|violet|pink|brown|black|white|grey|gray|silver|gold|beige|turquoise"
UNITS = (
    "am|pm|a\\.m\\.|p\\.m\\.|euros?|dollars?|pounds?|eur|usd|km|kilometres?|kilometers?|miles?|metres?|meters?|"
    "minutes?|hours?|days?|weeks?|months?|years?|characters?|percent|%|people|floors?|times"
)
SPANS = [
    ("email", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")),
    ("time", re.compile(r"\b\d{1,2}(?::\d{2}(?:\s*(?:am|pm)\b)?|(?:[.:]\d{2})?\s*(?:am|pm|a\.m\.|p\.m\.))", re.I)),
    ("number", re.compile(rf"\b\d(?:[\d,.\-/]*\d)?(?:st|nd|rd|th)?\b(?:\s+(?:{UNITS})\b)?", re.I)),
    (
        "number",
        re.compile(rf"\b(?:{NUMBER_WORDS})(?:[- ](?:{NUMBER_WORDS}))*\b(?:\s+(?:{UNITS})\b)?", re.I),
    ),
    ("code", re.compile(r"\b(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[\w-]{3,}\b")),
    ("colour", re.compile(rf"\b(?:{COLOURS})\b", re.I)),
    ("name", re.compile(r"\b[A-Z][\w'’-]*(?:\s+(?:of\s+|de\s+|van\s+)?[A-Z][\w'’-]*)*")),
]
WEEKDAYS = {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}
MONTHS = {"january", "february", "march", "april", "may", "june", "july", "august", "september", "october"}
MONTHS |= {"november", "december"}
COMMON = set(
    "a an the of to in on at for and or but with by from as is are was were be it its this that these those our your "
    "their his her my we you they he she i if when while each every any all no not some there here what which who "
    "how why where welcome please also finally first then after before during until since up so yes".split()
)
LABEL = re.compile(r"^(?P<label>[^:]{2,60}):\s+(?P<value>.+)$")
BULLET = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'])")


@dataclass(frozen=True)
class Fact:
    """One thing the context says: a key (what a question about it expects) within a claim within a passage."""

    claim: str  # the sentence (or bullet) that states it
    passage: str  # where it came from: its paragraph, or its bullet under the list's heading
    key: str  # the distinctive span the fact is about ('' = none: learnt, not checkable)
    kind: str  # the key's kind: email, time, number, year, name, weekday, value, '' (none)
    label: str = ""  # a bullet's "Label:" (what the fact is about), else ''
    also: tuple[str, ...] = ()  # a bullet's other keys (one fact per bullet: "Address: 14 Quayside Road, Port Wren")

    @property
    def sentence(self) -> str:
        """The claim (the name ``persona_eval`` reads)."""
        return self.claim

    def answers(self) -> list[str]:
        """Accepted answers: the key (or a bullet's other keys), and for a number with its unit the bare number."""
        result = []
        for key in (self.key, *self.also) if self.key else ():
            bare = re.match(r"[\d.,:\-/]+", key)
            result += [key] + ([bare.group(0)] if bare and bare.group(0) != key else [])
        return result


def passages(text: str) -> list[tuple[str, list[str]]]:
    """(passage, its claims) in order: each prose paragraph, each bullet (with the heading above its list)."""
    result: list[tuple[str, list[str]]] = []
    heading = ""
    for block in re.split(r"\n\s*\n", text):
        prose: list[str] = []
        for raw in block.splitlines():
            line = raw.strip()
            if not line or line.startswith(("```", "|")):
                continue
            if line.startswith("#"):
                heading = line.lstrip("#").strip()
                continue
            if BULLET.match(raw):
                item = BULLET.sub("", raw).strip()
                result.append((f"{heading}\n- {item}" if heading else item, [item]))
            else:
                prose.append(line)
        if prose:
            paragraph = " ".join(prose)
            claims = [s.strip() for s in SENTENCE_END.split(paragraph) if len(s.split()) >= 3]
            if claims:
                result.append((paragraph, claims))
    return result


def extract(text: str, max_keys: int = 4) -> list[Fact]:
    """Every fact of ``text`` (at most ``max_keys`` per claim), in the order the text states them."""
    proper = _proper_words(text)
    facts: list[Fact] = []
    for passage, claims in passages(text):
        for claim in claims:
            label, value = "", claim
            if (match := LABEL.match(claim)) and len(match["label"].split()) <= 6:
                label, value = match["label"].strip(), match["value"].strip()
            keys = keys_of(value, proper, initial=not label)[:max_keys]
            if label and not keys:
                short = value.rstrip(".")
                keys = [(short, "value")] if len(short.split()) <= 4 else []
            if label and keys:  # a bullet is one fact about its label, whatever its value holds
                facts.append(Fact(claim, passage, keys[0][0], keys[0][1], label, tuple(k for k, _ in keys[1:])))
                continue
            facts += [Fact(claim, passage, key, kind, label) for key, kind in keys] or [Fact(claim, passage, "", "")]
    return facts


def keys_of(sentence: str, proper: set[str], initial: bool = True) -> list[tuple[str, str]]:
    """The distinctive spans of a sentence, (text, kind), left to right, none inside another."""
    taken: list[tuple[int, int, str, str]] = []
    for kind, pattern in SPANS:
        for match in pattern.finditer(sentence):
            start, end = match.span()
            span = match.group(0).rstrip(".,;:")
            end = start + len(span)
            if any(start < b and a < end or text == span for a, b, text, _ in taken):
                continue
            found = _classify(span, kind, start == 0 and initial, proper)
            if found:
                taken.append((start, end, *found))
    return [(span, kind) for _, _, span, kind in sorted(taken)]


def _classify(span: str, kind: str, initial: bool, proper: set[str]) -> tuple[str, str] | None:
    if kind == "number":
        if re.fullmatch(r"(?:19|20)\d\d", span):
            return span, "year"
        return (span, "number") if any(c.isdigit() for c in span) or span.lower() != "one" else None
    if kind in ("colour", "code"):
        return span, "value"
    if kind != "name":
        return span, kind
    words = span.split()
    day = words[0].lower().rstrip("s") in WEEKDAYS
    while words and (words[0].lower() in COMMON or (initial and words[0] not in proper and not day)):
        words, initial = words[1:], False
    if not words:
        return None
    name = " ".join(words)
    if name.lower() in WEEKDAYS or name.lower().rstrip("s") in WEEKDAYS:
        return name, "weekday"
    if name.lower() in MONTHS:
        return name, "value"
    return name, "name"


def _proper_words(text: str) -> set[str]:
    """Words the text capitalises mid-sentence: its proper nouns (a sentence's first word counts only if in here).
    A line is a sentence too: a bullet without a full stop ("- Phone: 555-0142") ends before the next one."""
    words = set()
    lines = re.sub(BULLET.pattern, "", text, flags=re.M).splitlines()
    for sentence in (s for line in lines for s in SENTENCE_END.split(" ".join(line.split()))):
        for word in re.findall(r"(?<=\s)[A-Z][\w'’-]*", " " + " ".join(sentence.split()[1:])):
            words.add(word)
    return words - {"I"}
