"""How people ask about a labelled fact ("Phone: 555-0143"), and a sentence that answers them.

A fact sheet names its facts by label; people ask in their own words ("How can I call you?", "Who runs the
place?"), which share no word with the label. A student trained only on questions built from the label
answers those and not a person's. So for the labels fact sheets of businesses and people commonly use
(``TOPICS``: phone, address, opening hours, closing day, founding, owner, wifi, email, website, price,
delivery) this module gives the questions as customers put them, in the second person ("you") and about the
subject by name, and an answer as a sentence that names the subject. Any other label gets questions made
from the label itself ("What is your rental deposit?").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from distill_tools.facts import Fact

PLACES = set(
    "bakery shop store cafe café clinic studio restaurant bar pub garage salon library hotel office school gym "
    "pharmacy market bookshop gallery museum workshop practice agency firm company club centre center".split()
)


@dataclass(frozen=True)
class Topic:
    """Questions people ask about one kind of label (``you``: second person; ``about``: ``{x}`` names the
    subject), and the answer as a sentence (``{X}``: the subject's name, ``{value}``: the label's value)."""

    label: re.Pattern[str]
    you: tuple[str, ...]
    about: tuple[str, ...]
    answer: str = ""  # '' = the value as a sentence


def _topic(label: str, you: str, about: str, answer: str = "") -> Topic:
    return Topic(re.compile(label, re.I), tuple(you.split(" | ")), tuple(about.split(" | ") if about else ()), answer)


TOPICS = (
    _topic(r"^name$", "What is this place called? | What's the name of this place? | What is the business called?", ""),
    _topic(
        r"\b(?:clos\w*|day off|rest day|shut)\b",
        "Which day are you closed? | What day of the week do you not open? | Is there a day you're shut? | "
        "Are you open every day of the week? | What's your day off?",
        "When is {x} closed? | Which day is {x} shut?",
    ),
    _topic(
        r"\b(?:phone|telephone|tel|mobile)\b",
        "What's your phone number? | How can I call you? | What number should I ring to reach you? | "
        "Can I give you a call? What's the number? | How do I contact you by phone?",
        "What is the phone number for {x}? | How do I phone {x}? | What number do I use to call {x}?",
        "You can call {X} on {value}.",
    ),
    _topic(
        r"\b(?:address|location|located)\b",
        "Where are you? | Where are you located? | Where can I find you? | What's your address? | "
        "How do I get to you? What's the address?",
        "Where is {x}? | What street is {x} on? | Where do I go to visit {x}?",
        "{X} is at {value}.",
    ),
    _topic(
        r"\b(?:hours|opening|open)\b",
        "When are you open? | What are your hours? | What time do you open and close? | "
        "How early do you open, and when do you close? | Are you open in the afternoon? What are your hours?",
        "When is {x} open? | What time does {x} open? | What time does {x} close?",
        "{X} is open {value}.",
    ),
    _topic(
        r"\b(?:founded|established|opened|started|since)\b",
        "When were you founded? | How long have you been around? | What year did you open? | "
        "How long have you been in business? | When did you start out?",
        "When was {x} founded? | What year did {x} open? | How old is {x}?",
        "{X} was founded in {value}.",
    ),
    _topic(
        r"\b(?:owner|owned|proprietor|founder|run by|manager|boss)\b",
        "Who owns this place? | Who runs the place? | Who's the boss here? | Whose business is this? | "
        "Who is in charge here?",
        "Who runs {x}? | Who is behind {x}? | Who is the owner of {x}?",
        "{X} is run by {value}.",
    ),
    _topic(
        r"\b(?:wi-?fi|password|internet|network)\b",
        "What's the wifi password? | How do I get on your wifi? | Can I use the internet here? What's the code? | "
        "What's the password for the wifi? | Do you have wifi for customers? What's the password?",
        "What is the wifi password at {x}?",
        "The wifi password is {value}.",
    ),
    _topic(
        r"\be-?mail\b",
        "What's your email address? | How can I email you? | Where do I send an email?",
        "What is the email address of {x}?",
        "You can email {X} at {value}.",
    ),
    _topic(
        r"\b(?:website|web ?site|url|homepage)\b",
        "Do you have a website? | Where can I find you online? | What's your website?",
        "What is the website of {x}?",
        "The website of {X} is {value}.",
    ),
    _topic(
        r"\b(?:deliver\w*|shipping)\b",
        "Do you deliver? | Can you deliver to my home? | How far do you deliver? | Can I get it delivered?",
        "Does {x} deliver?",
    ),
)
PRICE = re.compile(r"^(?P<item>.+?)\s+costs?\s+", re.I)


def subject(facts: list[Fact]) -> str:
    """What a fact sheet is about: its "Name:" bullet's name, else its heading before a colon ('' = unknown)."""
    named = [f.key for f in facts if f.label.lower() == "name" and f.kind == "name"]
    headings = [f.passage.split("\n", 1)[0] for f in facts if f.label and "\n- " in f.passage]
    return (named or [h.split(":", 1)[0].strip() for h in headings] or [""])[0]


def references(name: str) -> list[str]:
    """How a person refers to ``name`` in a question: by name, and as "the bakery" when its last word is a place."""
    if not name:
        return []
    last = name.split()[-1].lower()
    return [name] + ([f"the {last}"] if last in PLACES else [])


def questions(label: str, value: str, name: str) -> list[str]:
    """How people ask for ``label``'s value, in their own words (second person, and about ``name``)."""
    refs = references(name)
    topic = find(label)
    if topic is not None:
        about = [q.format(x=r) for q in topic.about for r in refs]
        return list(topic.you) + about
    price = PRICE.match(value)
    if re.search(r"\b(?:price|cost|fee|charge|rate)\b", label, re.I) and price:
        item = price["item"][:1].lower() + price["item"][1:]
        return [f"How much is {item}?", f"What does {item} cost?", f"How much do you charge for {item}?"]
    lower = label[:1].lower() + label[1:]
    return [f"What's your {lower}?", f"Can you tell me about your {lower}?"] + [
        f"What is the {lower} of {r}?" for r in refs
    ]


def answer(label: str, value: str, name: str) -> str:
    """The value stated as a sentence that names the subject ('' when no sentence fits: the claim stands)."""
    topic = find(label)
    value = value.rstrip(". ")
    if topic is not None and topic.answer and name:
        return topic.answer.format(X=name, value=value)
    if len(value.split()) >= 4 and re.search(r"\b(?:is|are|costs?|needs?|can|has|have)\b", value):
        return value[:1].upper() + value[1:] + "."
    return ""


def find(label: str) -> Topic | None:
    """The topic ``label`` is about (None: none of ``TOPICS``)."""
    return next((t for t in TOPICS if t.label.search(label)), None)
