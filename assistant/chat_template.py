"""Render a conversation with a model's own chat template (sandboxed Jinja, bounded).

GGUF files carry their template in ``tokenizer.chat_template``. Some (Gemma 3's packaged
file among them) carry none: then a built-in template for the architecture is used.
"""

from __future__ import annotations

import time
from datetime import datetime

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
    "{% set system = '' %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{% set system = message['content'] + '\n\n' %}"
    "{% else %}"
    "{% set role = 'model' if message['role'] == 'assistant' else 'user' %}"
    "{{ '<start_of_turn>' + role + '\n' + (system if loop.index0 <= 1 and role == 'user' else '') "
    "+ message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

FALLBACKS = {"gemma": GEMMA, "gemma2": GEMMA, "gemma3": GEMMA}

MAX_RENDER_SECONDS = 2.0
MAX_RENDER_CHARS = 64 * 1024 * 1024


class TemplateError(AssistantError):
    """The chat template is invalid, hostile or too slow."""


def fallback_for(architecture: str) -> str:
    """The built-in template used when a GGUF carries none."""
    return FALLBACKS.get(architecture, CHATML)


def _raise(message: str) -> None:
    raise TemplateError(f"chat template raised: {message}")


class ChatTemplate:
    """A compiled, sandboxed chat template."""

    def __init__(self, source: str, bos_token: str = "", eos_token: str = "", builtin: bool = False) -> None:
        self.source = source
        self.builtin = builtin
        self.bos_token, self.eos_token = bos_token, eos_token
        env = ImmutableSandboxedEnvironment(
            loader=jinja2.BaseLoader(), trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        env.globals.update(raise_exception=_raise, strftime_now=lambda f: datetime.now().strftime(f))
        try:
            self._template = env.from_string(source)
        except jinja2.TemplateError as exc:
            raise TemplateError(f"invalid chat template: {exc}") from None

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """Render; stops a template that runs too long or produces too much output."""
        deadline = time.monotonic() + MAX_RENDER_SECONDS
        size, parts = 0, []
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
        return "".join(parts)
