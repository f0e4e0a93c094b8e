"""``assistant distill …`` and ``python -m distill_tools …``: run, eval, export, from-history (and ``persona_cli``).

This module loads with the assistant's command line (``assistant --help`` builds every parser): the handlers
import what they need (the pipeline and torch, the registry and its database, numpy) only when a command runs.
``python -m distill_tools`` has its own error path (:func:`run`); its ``from-history`` and ``persona`` read the
assistant's own data, which this library does not open (see ``app``): they run as ``assistant distill …`` in a
child process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

from assistant import AssistantError
from assistant.config import data_dir
from assistant.storage.files import atomic_write_text
from distill_tools import Interrupted, distributed, persona_cli, recipe
from distill_tools.app import App
from distill_tools.progress import interrupted, one_line, printer
from distill_tools.recipe import QUANTS

REPLACE_HELP = "overwrite a model of the same name that this recipe did not make"
PROG = "python -m distill_tools"


class Parser(argparse.ArgumentParser):
    """The parser of ``python -m distill_tools`` (and, by argparse's ``parser_class`` default, of its commands): a
    usage error is one line and exit 1, as ``assistant``'s (``distill: error: persona: the following arguments are
    required: name (see python -m distill_tools persona --help)``), not argparse's usage block and exit 2."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix(PROG).strip()
        line = f"{command}: {message}" if command else message
        self.exit(1, f"distill: error: {one_line(line)} (see {self.prog} --help)\n")


def add_commands(group: argparse._SubParsersAction, app: App | None = None) -> None:
    """Add the distill subcommands to an argparse subparsers group; ``app``: what ``from-history`` and ``persona``
    read of the assistant (None: they run through ``assistant distill``, see :func:`main`)."""
    run = group.add_parser("run", help="teacher → student → GGUF → report → registered (resumable)")
    run.add_argument("config", help="recipe TOML file (or 'tiny' / 'default' for the bundled ones)")
    run.add_argument("--json", action="store_true", help="print the summary as JSON (phase lines go to stderr)")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument(
        "--resume",
        dest="resume",
        action="store_const",
        const="resume",
        default="auto",
        help="continue the checkpoint; refuse if there is none or the recipe changed since",
    )
    mode.add_argument(
        "--fresh",
        dest="resume",
        action="store_const",
        const="fresh",
        help="discard the checkpoint and train from the start (the teacher cache is kept)",
    )
    run.add_argument("--replace", action="store_true", help=REPLACE_HELP)
    run.add_argument(
        "--nproc",
        type=int,
        default=1,
        metavar="N",
        help="train data-parallel in N processes (torchrun: one per GPU, or gloo on CPU)",
    )
    run.add_argument(
        "--fsdp",
        action="store_true",
        help="with --nproc: shard the student's weights, gradients and optimizer state over the processes "
        "(as the recipe's [train] fsdp = true)",
    )
    run.set_defaults(handler=cmd_run)

    ev = group.add_parser("eval", help="compare a teacher and students (GGUF files or model names) in llama.cpp")
    ev.add_argument("--teacher", required=True)
    ev.add_argument("--student", required=True, action="append", help="repeat for several students")
    ev.add_argument("--tasks", default="bundled:tasks", help="task JSONL with prompt + accepted answers")
    ev.add_argument(
        "--heldout", default="", help="prompt file for KL/agreement/perplexity (default: bundled tasks' prompts)"
    )
    ev.add_argument("--max-new-tokens", type=int, default=48)
    ev.add_argument("--out", default="", help="report folder (default: <data dir>/distill/eval)")
    ev.set_defaults(handler=cmd_eval)

    ex = group.add_parser("export", help="write the recipe's latest checkpoint as a verified GGUF")
    ex.add_argument("config")
    ex.add_argument("--quant", choices=QUANTS, default=None)
    ex.add_argument("--out", default=None, help="GGUF path (default: <models dir>/<name>.gguf, registered)")
    ex.add_argument("--replace", action="store_true", help=REPLACE_HELP)
    ex.set_defaults(handler=cmd_export)

    fh = group.add_parser("from-history", help="escalated question → teacher answer pairs as a JSONL dataset")
    fh.add_argument("-o", "--output", default=None, help="JSONL file (default: <data dir>/distill/history.jsonl)")
    fh.set_defaults(handler=cmd_from_history, app=app)

    persona_cli.add_command(group, app)
    for command in group.choices.values():  # whose name a line about a Ctrl-C starts with
        command.set_defaults(tool="distill" if app is None else "assistant")


def _resolve_model(spec: str) -> Path:
    from assistant.models import registry

    with registry.opened() as models:
        path = models.resolve(spec)
    if not path.exists():
        raise AssistantError(f"{path}: no such model file")
    return path


def cmd_run(args: argparse.Namespace) -> int:
    if args.nproc > 1 and not distributed.world().parallel:
        return launch(args)
    say = printer(sys.stderr if args.json else None)
    loaded = recipe.load(args.config)
    from distill_tools import pipeline  # torch loads here, once the recipe is known to be valid
    from distill_tools.evaluate import figure

    loaded.train.fsdp = loaded.train.fsdp or args.fsdp
    try:
        summary = pipeline.run(loaded, resume=args.resume, replace=args.replace, say=say)
    except Interrupted as exc:
        return interrupted(args.tool, exc)
    finally:
        distributed.stop()
    if "rank" in summary:
        return 0  # another rank of a torchrun: rank 0 reports
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    registered = f", registered as {summary['name']!r}" if summary["registered"] else " (not registered)"
    print(f"student: {summary['gguf']} ({summary['quant']}){registered}")
    for m in summary["models"]:
        print(
            f"  {m['label']:<26} retention {figure(m['retention'], '6.1%')}  KL {figure(m['mean_kl'], '.3f')}  "
            f"top-1 {figure(m['top1_agreement'], '6.1%')}  ppl {figure(m['perplexity'], '6.2f')}  "
            f"{m['size_bytes'] / 1e6:6.1f} MB  {figure(m['tokens_per_s'], '5.0f')} tok/s"
        )
    where = f"report: {summary['report']['markdown']}  " if summary["report"] else ""
    print(f"{where}({summary['timings_s']['total_s']:.0f} s in all)")
    return 0


def launch(args: argparse.Namespace) -> int:
    """``--nproc N``: the same command under ``torchrun --standalone --nproc_per_node N``; Ctrl-C reaches every
    rank (they stop at the same step with a checkpoint); a second one stops torchrun."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(args.nproc),
        "-m",
        "distill_tools",
        "run",
        args.config,
        *(["--json"] if args.json else []),
        *({"resume": ["--resume"], "fresh": ["--fresh"]}.get(args.resume, [])),
        *(["--replace"] if args.replace else []),
        *(["--fsdp"] if args.fsdp else []),
    ]
    code = wait_for(command)
    if code is None:
        print("distill: interrupted", file=sys.stderr)
        return 130
    return code


def wait_for(command: list[str]) -> int | None:
    """Run ``command`` in a child process: its exit code, or None after a Ctrl-C. Ctrl-C reaches the child too
    (the same process group): it is given two minutes to stop by itself (to save a checkpoint); a second Ctrl-C,
    or the time running out, terminates it."""
    process = subprocess.Popen(command)
    try:
        return process.wait()
    except KeyboardInterrupt:
        try:
            process.wait(timeout=120)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            process.terminate()
            process.wait(timeout=60)
        return None


def cmd_eval(args: argparse.Namespace) -> int:
    from distill_tools import evaluate, prompts

    teacher = _resolve_model(args.teacher)
    students = {}
    for spec in args.student:
        students[Path(spec).stem if spec.endswith(".gguf") else spec] = _resolve_model(spec)
    tasks = evaluate.load_tasks(args.tasks)
    records = prompts.load_records([args.heldout]) if args.heldout else tasks
    heldout = [r["prompt"] for r in records]
    reports = evaluate.evaluate(teacher, students, tasks, heldout, args.max_new_tokens)
    out = Path(args.out) if args.out else data_dir() / "distill" / "eval"
    paths = evaluate.write_report(out, reports)
    print(evaluate.markdown(reports, {}))
    print(f"report: {paths['markdown']}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from distill_tools import pipeline

    config = recipe.load(args.config)
    target, result, registered = pipeline.export_checkpoint(
        config, args.quant, Path(args.out) if args.out else None, replace=args.replace, say=printer()
    )
    print(f"wrote {target}" + (f", registered as {config.name!r}" if registered else ""))
    if result:
        print(result.line())
    return 0


def cmd_from_history(args: argparse.Namespace) -> int:
    from distill_tools.prompts import from_history

    records = from_history(args.app.exchanges())
    out = Path(args.output) if args.output else data_dir() / "distill" / "history.jsonl"
    atomic_write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    print(f"wrote {len(records)} escalated question/answer pairs to {out}")
    if not records:
        print("(no escalated answers in the history yet)", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="Distil a teacher into a student.")
    add_commands(parser.add_subparsers(dest="distill_command", required=True))
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m distill_tools``: ``from-history`` and ``persona`` (what read the assistant's own data) as
    ``assistant distill …`` in a child process, every other command here, through :func:`run`."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    if "app" in vars(args):  # (None here: see the module's docstring)
        code = wait_for([sys.executable, "-m", "assistant", "distill", *argv])
        return 130 if code is None else code  # (the child said why it stopped)
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Run the parsed command: its exit code, or 1 with one sanitised line on stderr for a user error (as the
    assistant's command line does). Ctrl-C exits 130; a closed pipe (``… | head``) exits quietly."""
    try:
        code: int = args.handler(args)
        sys.stdout.flush()  # a closed pipe shows up here rather than at exit
        return code
    except AssistantError as exc:
        print(f"distill: error: {one_line(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("distill: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
