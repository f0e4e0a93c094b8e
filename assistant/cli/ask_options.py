"""`assistant ask` per-turn options: files (``-f``), structured output (``--schema``), reasoning (``--show-reasoning``).

The ``ask`` command (cli.py) calls these at three points: ``AskOptions(args)`` before anything
loads (a bad file or schema fails at once), ``prepare`` once the model is loaded (token counts,
the grammar), ``shown`` for every streamed piece, and ``finish`` for the extra ``--json`` fields.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from assistant import AssistantError
from assistant.chat import attach
from assistant.chat.reasoning import ReasoningFilter, opens_in_prompt, split
from assistant.models.schema import SchemaError, check, grammar_for, instruction, parse_schema
from assistant.text_safety import sanitize


def add_arguments(ask: argparse.ArgumentParser) -> None:
    ask.add_argument(
        "-f",
        "--file",
        dest="files",
        action="append",
        default=[],
        metavar="PATH",
        help="put a text file in the question ('-' reads stdin); repeatable",
    )
    ask.add_argument(
        "--schema",
        help="answer with JSON following SCHEMA: a JSON Schema (file or string) "
        "or fields like 'name, age int, tags list'",
    )
    ask.add_argument(
        "--show-reasoning",
        action="store_true",
        help='also print the model\'s <think> reasoning (to stderr; with --json, as "reasoning")',
    )


class AskOptions:
    """The options of one `ask`, checked before the model loads."""

    def __init__(self, args: argparse.Namespace, persona: Any = None) -> None:
        files = getattr(args, "files", [])
        if files.count("-") > 1:
            raise AssistantError("'-f -' can be given once (standard input is read once)")
        self.show_reasoning = getattr(args, "show_reasoning", False)
        self.schema = parse_schema(args.schema) if getattr(args, "schema", None) else None
        if self.schema is None and persona is not None:
            self.schema = persona.schema  # the persona's default; --schema overrides it
        self.attachments = [attach.read(path) for path in files]
        self.reads_stdin = "-" in files
        self.starts_inside = False
        self._filter = ReasoningFilter()

    def prepare(self, question: str, engine: Any, session: Any, max_tokens: int) -> str:
        """The message to send: the files' blocks and the schema's instruction around the question."""
        if self.schema is not None:
            session.sampling["grammar"] = grammar_for(self.schema)
            question = f"{question}\n\n{instruction(self.schema)}"
        if self.attachments:
            attach.count_and_check(self.attachments, question, engine, max_tokens)
            for a in self.attachments:
                print(sanitize(f"attached {a.name} ({a.size} bytes, {a.tokens} tokens)"), file=sys.stderr)
        self.starts_inside = opens_in_prompt(engine.model.template.render([{"role": "user", "content": "?"}]))
        self._filter = ReasoningFilter(self.starts_inside)
        return attach.compose(question, self.attachments)

    def shown(self, piece: str) -> str:
        """The part of a streamed piece for stdout; reasoning goes to stderr only with --show-reasoning."""
        reasoning, answer = self._filter.feed(piece)
        if reasoning and self.show_reasoning:
            sys.stderr.write(sanitize(reasoning))
            sys.stderr.flush()
        return answer

    def finish(self, answer: str, finish_reason: str) -> dict[str, Any]:
        """The rest of the stream for stdout, and the ``--json`` fields; a schema mismatch fails with one line."""
        reasoning, text = split(answer, self.starts_inside)
        fields: dict[str, Any] = {"answer": text}
        if self.show_reasoning:
            fields["reasoning"] = reasoning
        elif reasoning and not text.strip():
            print("note: the answer ended inside its reasoning; --show-reasoning prints it", file=sys.stderr)
        if self.attachments:
            fields["attachments"] = [a.record() for a in self.attachments]
        if self.schema is not None:
            try:
                fields["parsed"] = check(text, self.schema)
            except SchemaError as exc:
                cut = " (cut at the token limit: raise --max-tokens)" if finish_reason == "length" else ""
                raise SchemaError(f"{exc}{cut}") from None
        return fields

    def rest(self) -> str:
        """What the reasoning filter still holds for stdout at the end of the stream."""
        reasoning, answer = self._filter.flush()
        if reasoning and self.show_reasoning:
            sys.stderr.write(sanitize(reasoning))
        return answer
