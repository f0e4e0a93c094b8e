"""`assistant serve`: the OpenAI-compatible API on localhost (see assistant/server.py)."""

from __future__ import annotations

import argparse
import os
import sys

from assistant import AssistantError
from assistant.cli.common import Subparsers
from assistant.config import load


def register(subparsers: Subparsers) -> None:
    """Add the `serve` command to the `assistant` parser."""
    serve = subparsers.add_parser("serve", help="serve the models to other tools through an OpenAI-compatible API")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; any other needs --api-key-env)"
    )
    serve.add_argument("--port", type=int, default=8181, help="port (default 8181; 0 picks a free one)")
    serve.add_argument("--api-key-env", metavar="VAR", help="require the API key held in environment variable VAR")
    serve.add_argument("--model", help="load this model or persona before serving (others load on first use)")
    serve.add_argument(
        "--idle-unload",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="unload the model after this long without a request (default: keep it)",
    )
    serve.add_argument("--queue", type=int, default=16, help="requests that may wait while one runs (default 16)")
    serve.add_argument(
        "--max-body", type=int, default=1 << 20, metavar="BYTES", help="largest request body accepted (default 1 MiB)"
    )
    serve.add_argument("--max-tokens", type=int, default=4096, help="largest max_tokens a request may ask for")
    serve.add_argument("--no-history", action="store_true", help="do not store the exchanges in the history")
    serve.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    try:  # deliberately lazy: the serve extra is optional, and starlette and uvicorn load only to serve
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise AssistantError("`assistant serve` needs the serve extra: pip install 'assistant[serve]'") from None
    from assistant.server.app import ServeOptions, serve

    if not 0 <= args.port <= 65535:
        raise AssistantError(f"--port {args.port}: use 0-65535")
    for name, least in (("idle_unload", 0), ("queue", 0), ("max_body", 1), ("max_tokens", 1)):
        if getattr(args, name) < least:
            raise AssistantError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be at least {least}")
    key = ""
    if args.api_key_env:
        key = os.environ.get(args.api_key_env, "")
        if not key:
            raise AssistantError(f"--api-key-env {args.api_key_env}: that environment variable is empty or unset")
    options = ServeOptions(
        host=args.host,
        port=args.port,
        api_key=key,
        model=args.model or "",
        idle_unload_s=args.idle_unload,
        queue=args.queue,
        max_body_bytes=args.max_body,
        max_tokens=args.max_tokens,
        history=not args.no_history,
    )
    try:
        serve(options, load())
    except KeyboardInterrupt:  # Ctrl-C is how a server is stopped: not an error
        pass
    # uvicorn re-raises the Ctrl-C it caught once it has shut down; a server started with SIGINT ignored (a
    # background job of a script) gets none back, and returns here
    print("assistant serve: stopped", file=sys.stderr)
    return 0
