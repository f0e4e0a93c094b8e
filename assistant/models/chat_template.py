"""Render a conversation with a model's own chat template (sandboxed Jinja, bounded).

GGUF files carry their template in ``tokenizer.chat_template``. Some (Gemma 3's packaged
file among them) carry none: then a built-in template for the architecture is used.
"""

from __future__ import annotations

import functools
import re
import sys
import time
from datetime import datetime
from types import FrameType
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from assistant import AssistantError

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

GEMMA = (
    "{{ bos_token }}"
    "{% set ns = namespace(system='') %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{% set ns.system = message['content'] + '\n\n' %}"
    "{% else %}"
    "{% set role = 'model' if message['role'] == 'assistant' else 'user' %}"
    "{{ '<start_of_turn>' + role + '\n' + (ns.system if loop.index0 <= 1 and role == 'user' else '') "
    "+ message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

FALLBACKS = {"gemma": GEMMA, "gemma2": GEMMA, "gemma3": GEMMA}

MAX_RENDER_SECONDS = 2.0
MAX_RENDER_CHARS = 64 * 1024 * 1024
MAX_INT_BITS = 256  # arithmetic in a template never needs bigger numbers (10 ** 10 ** 10 would hang in C)
MAX_TEMPLATE_CHARS = 256 * 1024  # real chat templates are a few KB; a huge one could stall the compiler
MAX_ARGUMENT = 1_000_000  # a bigger number passed to a filter or method (center, indent, ljust...) is refused


class TemplateError(AssistantError):
    """The chat template is invalid, hostile or too slow."""


def fallback_for(architecture: str) -> str:
    """The built-in template used when a GGUF carries none."""
    return FALLBACKS.get(architecture, CHATML)


def _raise(message: str) -> None:
    raise TemplateError(f"chat template raised: {message}")


def _refuse(what: str) -> None:
    raise TemplateError(f"chat template refused: {what}")


def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, list, tuple)) else 0


def _check_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_ARGUMENT:
            _refuse(f"absurd number {value} passed to a function")


def _guard_filter(fn: Any) -> Any:
    @functools.wraps(fn)  # keeps jinja's pass_context/pass_environment marks
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _check_arguments(args, kwargs)
        if fn.__name__ == "do_format" and args and isinstance(args[0], str):
            _check_format(args[0])
        return fn(*args, **kwargs)

    return guarded


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, plus bounds on arithmetic, repetition and function arguments.

    The sandbox already blocks attribute access to Python internals, imports and file access
    (there is no loader) and caps ``range``; these bounds stop a single operation from
    allocating gigabytes or computing for minutes inside C code, where no deadline can reach.
    """

    intercepted_binops = frozenset({"*", "**", "+", "%"})  # also disables compile-time folding of them

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters = {name: _guard_filter(fn) for name, fn in self.filters.items()}

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        ints = all(isinstance(v, int) for v in (left, right))
        if operator == "*":
            if ints and left.bit_length() + right.bit_length() > MAX_INT_BITS:
                _refuse("number too large")
            count = right if isinstance(right, int) else left if isinstance(left, int) else 1
            if max(_size(left), _size(right)) * max(count, 0) > MAX_RENDER_CHARS:
                _refuse("repetition too large")
        elif operator == "**" and ints:
            if right > MAX_INT_BITS or abs(left).bit_length() * max(right, 0) > MAX_INT_BITS:
                _refuse("number too large")
        elif operator == "+" and _size(left) + _size(right) > MAX_RENDER_CHARS:
            _refuse("string too large")
        elif operator == "%" and isinstance(left, str) and any(c.isdigit() for c in left):
            _check_format(left)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - jinja's signature
        _check_arguments(args, kwargs)
        method = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format
        if getattr(method, "__name__", "") in ("format", "format_map") and isinstance(
            getattr(method, "__self__", None), str
        ):
            _check_format(method.__self__)
        return super().call(__context, __obj, *args, **kwargs)


def _check_format(text: str) -> None:
    """A format string may not ask for a field millions of characters wide."""
    if re.search(r"[%:][^%{}\s]{0,8}?\d{7,}", text):
        _refuse("format width too large")


class _Deadline:
    """A trace function that stops template code (Python, compiled by Jinja) after a deadline.

    A loop that writes nothing (nested ``range`` loops) never returns to ``render``'s own
    check, so the check runs on every line the template executes.
    """

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def global_trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        return self.local_trace if frame.f_code.co_filename == "<template>" else None

    def local_trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        if time.monotonic() > self.deadline:
            raise TemplateError(f"chat template ran longer than {MAX_RENDER_SECONDS:g} s; refused")
        return self.local_trace


class ChatTemplate:
    """A compiled, sandboxed chat template."""

    def __init__(self, source: str, bos_token: str = "", eos_token: str = "", builtin: bool = False) -> None:
        self.source = source
        self.builtin = builtin
        self.bos_token, self.eos_token = bos_token, eos_token
        if len(source) > MAX_TEMPLATE_CHARS:
            raise TemplateError(
                f"chat template is {len(source):,} characters long (limit {MAX_TEMPLATE_CHARS:,}); refused"
            )
        env = _BoundedSandbox(
            loader=jinja2.BaseLoader(), trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        env.globals.update(raise_exception=_raise, strftime_now=lambda f: datetime.now().strftime(f))
        try:
            self._template = env.from_string(source)
        except TemplateError:
            raise
        except Exception as exc:  # jinja2.TemplateError, or anything its constant folding raised
            raise TemplateError(f"invalid chat template: {type(exc).__name__}: {exc}") from None

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """Render; stops a template that runs too long or produces too much output."""
        deadline = time.monotonic() + MAX_RENDER_SECONDS
        size, parts = 0, []
        previous_trace = sys.gettrace()
        sys.settrace(_Deadline(MAX_RENDER_SECONDS).global_trace)
        try:
            for part in self._template.generate(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            ):
                size += len(part)
                parts.append(part)
                if size > MAX_RENDER_CHARS or time.monotonic() > deadline:
                    raise TemplateError("chat template produced too much output or ran too long; refused")
        except TemplateError:
            raise
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateError(f"chat template tried something unsafe and was refused: {exc}") from None
        except Exception as exc:  # a broken template can raise anything
            raise TemplateError(f"chat template failed: {type(exc).__name__}: {exc}") from None
        finally:
            sys.settrace(previous_trace)
        return "".join(parts)
