"""`assistant ask` per-turn options: files (``-f``), structured output (``--schema``), reasoning (``--show-reasoning``),
documents (``--docs``, ``--show-context``).

The ``ask`` command (``assistant.cli.ask``) uses them at four points: :meth:`AskOptions.read` before anything
loads (a bad file or schema fails at once), ``prepare`` once the model is loaded (token counts, the grammar),
``shown`` for every streamed piece, and ``finish`` for the extra ``--json`` fields.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant import AssistantError
from assistant.chat import attach
from assistant.chat.attach import Attachment
from assistant.chat.grounding import Grounding
from assistant.chat.persona import Persona
from assistant.chat.reasoning import ReasoningFilter, opens_in_prompt, split
from assistant.chat.session import Session
from assistant.models.engine import Engine
from assistant.models.schema import SchemaError, check, grammar_for, instruction, parse_schema
from assistant.text_safety import sanitize


@dataclass
class AskOptions:
    """The options of one `ask`, checked before the model loads."""

    attachments: list[Attachment] = field(default_factory=list)  # the -f files, read
    reads_stdin: bool = False  # one of them is '-'
    schema: dict[str, Any] | None = None  # --schema, or the persona's
    show_reasoning: bool = False
    documents: list[Path] = field(default_factory=list)  # --docs: files and folders the answer is grounded in
    starts_inside: bool = field(default=False, init=False)  # the model's prompt opens its reasoning (see prepare)
    _filter: ReasoningFilter = field(default_factory=ReasoningFilter, init=False, repr=False)

    @classmethod
    def read(
        cls,
        files: list[str],
        schema: str | None,
        show_reasoning: bool,
        persona: Persona | None = None,
        docs: list[str] | None = None,
    ) -> AskOptions:
        """The options as given: ``files`` read, ``schema`` parsed (else the persona's default), ``docs`` found."""
        if files.count("-") > 1:
            raise AssistantError("'-f -' can be given once (standard input is read once)")
        parsed = parse_schema(schema) if schema else None
        if parsed is None and persona is not None:
            parsed = persona.schema  # the persona's default; --schema overrides it
        documents = [Path(d).expanduser() for d in docs or []]
        if missing := [str(d) for d in documents if not d.exists()]:
            raise AssistantError(f"--docs: no such file or folder: {', '.join(missing)}")
        return cls([attach.read(path) for path in files], "-" in files, parsed, show_reasoning, documents)

    def prepare(self, question: str, engine: Engine, session: Session, max_tokens: int) -> str:
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

    def ground(self, session: Session, message: str, show: bool) -> Grounding | None:
        """What the documents (``--docs``, or the persona's) add to ``message``, worked out before sending; printed
        to stderr with ``--show-context``. None without documents."""
        if not session.document_paths():
            return None
        session.index_progress = _indexing if sys.stderr.isatty() else None
        grounded = session.ground([*session.history(), {"role": "user", "content": message}])
        if show:
            what = f"{grounded.mode}, {grounded.tokens} tokens" if grounded.context else "nothing"
            print(f"--- added to the prompt ({what}) ---", file=sys.stderr)
            print(sanitize(grounded.context or "; ".join(grounded.notes)), file=sys.stderr)
            print("--- end of what was added ---", file=sys.stderr, flush=True)
        return grounded

    def shown(self, piece: str) -> str:
        """The part of a streamed piece for stdout; reasoning goes to stderr only with --show-reasoning."""
        reasoning, answer = self._filter.feed(piece)
        if reasoning and self.show_reasoning:
            sys.stderr.write(sanitize(reasoning))
            sys.stderr.flush()
        return answer

    def finish(self, answer: str, finish_reason: str, grounded: Grounding | None = None) -> dict[str, Any]:
        """The rest of the stream for stdout, and the ``--json`` fields; a schema mismatch fails with one line.
        ``grounded``: the documents' part, whose sources are listed (on stderr, or as ``"sources"``)."""
        reasoning, text = split(answer, self.starts_inside)
        fields: dict[str, Any] = {"answer": text}
        if self.show_reasoning:
            fields["reasoning"] = reasoning
        elif reasoning and not text.strip():
            print("note: the answer ended inside its reasoning; --show-reasoning prints it", file=sys.stderr)
        if self.attachments:
            fields["attachments"] = [a.record() for a in self.attachments]
        if grounded is not None:
            fields["sources"] = grounded.records()
            fields["grounding"] = grounded.mode
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


def _indexing(done: int, total: int) -> None:
    """The index's progress, on a terminal: one line rewritten in place."""
    end = "\n" if done >= total else ""
    print(f"\rindexing your documents: {done}/{total}", end=end, file=sys.stderr, flush=True)
