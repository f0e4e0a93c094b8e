"""`assistant ask`: one question, the answer streamed to stdout (or one JSON object)."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from typing import TYPE_CHECKING

from assistant import AssistantError
from assistant.cli.common import Subparsers, open_store, persona_named, text_argument
from assistant.config import Config, load, validate
from assistant.text_safety import StreamSanitizer, json_for_terminal, sanitize

if TYPE_CHECKING:
    from assistant.chat.escalation.teacher import EscalationRequest
    from assistant.models.manager import ModelManager


def register(subparsers: Subparsers) -> None:
    """Add the `ask` command to the `assistant` parser."""
    ask = subparsers.add_parser("ask", help="ask one question, stream the answer")
    ask.add_argument("prompt", nargs="*", type=text_argument, help="the question ('-' reads stdin)")
    ask.add_argument("--model", help="model name or GGUF path")
    ask.add_argument("--max-tokens", type=int, default=None)
    ask.add_argument("--temperature", type=float, default=None)
    ask.add_argument("--system", type=text_argument, default=None, help="system prompt")
    ask.add_argument("--persona", help="answer as this persona (see `assistant persona list`)")
    ask.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object: answer, model, model_file, escalated, tokens, "
        "ttft_s, tokens_per_s, draft_acceptance and draft_length (prompt-lookup drafting; null: none), drafting "
        '("on" or why not), '
        "conversation_id, finish_reason, notes, route (the escalation decision)",
    )
    ask.add_argument(
        "--escalate", choices=["never", "ask", "auto"], default=None, help="escalation to the teacher (default: config)"
    )
    ask.add_argument(
        "-c", "--continue", dest="continue_latest", action="store_true", help="continue the latest conversation"
    )
    ask.add_argument("--conversation", type=int, default=None, help="continue conversation ID")
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
    ask.add_argument(
        "--docs",
        action="append",
        default=[],
        metavar="PATH",
        help="ground the answer in this file or folder (repeatable): whole when it fits the window, else the "
        "passages that match the question (indexed on first use), with their sources",
    )
    ask.add_argument(
        "--show-context",
        action="store_true",
        help="print what the documents add to the prompt (to stderr) before sending it",
    )
    ask.set_defaults(handler=cmd_ask)


def cmd_ask(args: argparse.Namespace) -> int:
    # deliberately lazy: the model stack (sqlite-utils, numpy, the engine) loads when a question is asked,
    # not for `assistant --help` or the other commands
    from assistant.chat.session import Session
    from assistant.cli.ask_options import AskOptions
    from assistant.models.gguf_info import base_model_note
    from assistant.models.manager import ModelManager

    config = load()
    persona = persona_named(args.persona)
    _override(config, args)
    prompt = _prompt_argument(args)
    options = AskOptions.read(args.files, args.schema, args.show_reasoning, persona, args.docs)  # before loading
    from_stdin = not options.reads_stdin and (prompt == "-" or (not prompt and not sys.stdin.isatty()))
    if from_stdin:
        prompt = sys.stdin.buffer.read().decode("utf-8", errors="replace")  # any bytes: invalid ones become U+FFFD
    if not prompt.strip():
        raise AssistantError('nothing to ask: give a prompt, e.g. assistant ask "What is a monad?"')
    store = open_store()
    conversation_id = args.conversation
    if args.continue_latest:
        conversation_id = store.latest_conversation_id()
    if conversation_id is not None:
        store.conversation(conversation_id)  # clear error if it does not exist
    models = ModelManager(config, store)
    model_name = _load(models, args.model or (persona.runtime_model() if persona else ""))
    engine = models.engine
    if engine.model.info.base_model:
        print(f"note: {base_model_note(model_name)}", file=sys.stderr)
    session = Session(store, models, config, conversation_id, persona=persona, documents=options.documents)
    prompt = options.prepare(prompt, engine, session, config.generation.max_tokens)
    grounded = options.ground(session, prompt, args.show_context)
    approve = functools.partial(_approve, stdin_free=not (from_stdin or options.reads_stdin))
    stream = session.send(
        prompt, escalate=args.escalate, approve=approve, attachments=options.attachments, grounded=grounded
    )
    screen = StreamSanitizer()  # model output may hold terminal escape sequences: never pass them through
    try:
        for delta in stream:
            if not args.json:
                sys.stdout.write(screen.feed(options.shown(delta.text)))
                sys.stdout.flush()
    except KeyboardInterrupt:
        stream.close()  # finalises the stored answer as cancelled, keeping the partial text
        print("\n[stopped; the partial answer is saved]", file=sys.stderr)
        return 130
    turn = session.last
    if not args.json:
        sys.stdout.write(screen.feed(options.rest()) + "\n")
        sys.stdout.flush()
    extra = options.finish(turn.answer, turn.stats.finish_reason, turn.grounding if session.document_paths() else None)
    for note in turn.notes:
        print(sanitize(f"note: {note}"), file=sys.stderr)
    for number, source in enumerate([] if args.json else turn.grounding.sources, 1):
        print(sanitize(f"source [{number}] {source.label()}"), file=sys.stderr)
    if turn.escalated and not args.json:
        print(sanitize(f"note: answered by the teacher {turn.model} ({turn.route.get('reason', '')})"), file=sys.stderr)
    if turn.stats.finish_reason == "length" and not args.json:
        print(
            f"note: the answer was cut at the token limit ({turn.stats.completion_tokens} tokens); "
            "raise --max-tokens, or continue it in the chat UI (F5)",
            file=sys.stderr,
        )
    if args.json:
        summary = {
            "answer": turn.answer,
            "model": turn.model if turn.escalated else model_name,  # the registry's name, not the file's stem
            "model_file": "" if turn.escalated else str(engine.path),
            "escalated": turn.escalated,
            "tokens": turn.stats.completion_tokens,
            "ttft_s": round(turn.stats.ttft_s, 4),
            "tokens_per_s": round(turn.stats.tokens_per_s, 2),
            "draft_acceptance": None if (a := turn.stats.acceptance) is None else round(a, 3),
            "draft_length": None if (n := turn.stats.draft_length) is None else round(n, 2),
            "drafting": turn.stats.drafting or "off",  # "" when no local model answered
            "conversation_id": session.conversation_id,
            "finish_reason": turn.stats.finish_reason,
            "notes": turn.notes,
            "route": turn.route,
            **extra,
        }
        print(json_for_terminal(json.dumps(summary, ensure_ascii=False)))
    return 0


def _prompt_argument(args: argparse.Namespace) -> str:
    """The prompt as typed; '-' (read stdin) is refused when ``-f -`` reads stdin already."""
    prompt = " ".join(args.prompt) if args.prompt else ""
    if prompt == "-" and "-" in args.files:
        raise AssistantError(
            "'-f -' and the prompt '-' both read standard input (read once): "
            'give the question as text, e.g. assistant ask -f - "Summarise this"'
        )
    return prompt


def _load(models: ModelManager, requested: str) -> str:
    """Load the model asked for (a registry name, a registered model's file stem or a path, '' = the default);
    its registry name."""
    models.load(requested)
    return models.name


def _override(config: Config, args: argparse.Namespace) -> None:
    """--max-tokens, --temperature and --system override the config, checked as the config file is."""
    for option in ("max_tokens", "temperature", "system"):
        if (value := getattr(args, option)) is not None:
            setattr(config.generation, option, value)
    validate(config, "command line")


def _approve(request: EscalationRequest, stdin_free: bool = True) -> bool | str:
    """`--escalate ask`: show the exact request and read the answer from stdin (a terminal or a pipe).

    When stdin held the question itself there is nobody to ask: the reason is returned, nothing is sent.
    """
    if not stdin_free:
        return "escalation needs your approval, but stdin held the question (use a terminal, or --escalate auto)"
    print(sanitize(f"The question would be sent to {request.model}:\n{request.preview()}"), file=sys.stderr)
    print("Send it? [y/N] ", end="", file=sys.stderr, flush=True)
    try:
        line = sys.stdin.buffer.readline().decode("utf-8", errors="replace")
    except KeyboardInterrupt:
        return False
    if not line:
        return "escalation needs your approval, but stdin ended without an answer"
    return line.strip().lower() in ("y", "yes")
