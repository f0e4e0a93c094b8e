"""A teacher behind an OpenAI-compatible server (vLLM, llama.cpp's server, llama-cpp-python's server, a cloud API).

The teacher pass asks ``/v1/completions`` for each prompt (rendered with the student's chat template, so
the teacher reads exactly the tokens a local teacher would), a few prompts at a time, greedily, with
``logprobs = top_k + 4``. Where the server names its tokens in a way that maps one-to-one onto the
student's vocabulary (an ``id`` field, vLLM's ``token_id:N`` with ``return_tokens_as_token_ids``, the
token's ``bytes``, or a token text that only one vocabulary entry decodes to), the answer gets word-level
targets in the cache's usual shape: top-k ids and log-probabilities (at temperature 1, as served), the
tail = 1 − Σ top-k. Otherwise that answer is kept for sequence-level KD only (its own tokens as one-hot
targets: forward KL on them is the cross-entropy on the teacher's answer), and the pass counts how many.

Two approximations, both stated in the report: the stop position, where a server returns no log-probs for
the end-of-turn token it stops on (vLLM, llama-cpp-python's server; llama.cpp's server does return them), is
a one-hot target on end-of-turn, and a position where fewer than k of the returned tokens map is padded
with zero-probability entries (exact for forward KL and JSD).

Before any long work, :meth:`ServedTeacher.check_tokenizer` round-trips a probe text and the special
tokens through the server's tokenize endpoint and refuses a different tokenizer in one line. The API key
(read from the environment variable ``api_key_env`` names, as for escalation) goes in the ``Authorization``
header only.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from assistant.config import TeacherSettings
from distill_tools import DistillError
from distill_tools.teacher_cache import index_dtype

PROBE = "Hello, world! Ünïcödé — 東京 🙂\n\tdef f(x):\n        return x ** 2  # 42, 3.14e-5"
EXTRA = 4  # log-probs asked for beyond top_k: some returned tokens may not map, the chosen one may be added
RETRY_STATUSES = {429, 500, 502, 503, 504}  # worth another attempt (as escalation retries them)
BACKOFF_S = 0.25  # before the second attempt; doubled before each next one
Targets = tuple[list[int], np.ndarray, np.ndarray, np.ndarray]


@dataclass
class ServedTeacher:
    """Answers and top-k log-probs from a served model, for ``teacher_cache.teacher_pass``."""

    settings: TeacherSettings
    tokenizer: Any  # the student's: the server must tokenize the same way (see check_tokenizer)
    concurrency: int = 4
    word_level: int = 0  # answers with word-level targets so far
    sequence_level: int = 0  # answers kept for sequence-level KD only
    padded_positions: int = 0  # positions with fewer than k mapped tokens (padded with zero probability)
    seconds: float = 0.0
    _by_text: dict[str, int] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.url = self.settings.url.rstrip("/")
        self.root = self.url.removesuffix("/v1")
        self._lock = threading.Lock()
        env = self.settings.api_key_env  # a recipe names the key's variable only (no key file)
        self._key = os.environ.get(env, "").strip() if env else ""

    # -- tokenizer check
    def check_tokenizer(self) -> str:
        """Refuse a server whose tokenizer differs from the student's (one line); returns what was checked."""
        tok = self.tokenizer
        chat = tok.apply_chat_template([{"role": "user", "content": PROBE}], add_generation_prompt=True, tokenize=False)
        served = self._tokenize(chat)
        if served is None:
            return "not checked (the server has no tokenize endpoint); each answer's tokens are checked instead"
        local = list(tok(chat, add_special_tokens=False)["input_ids"])
        where = f"teacher at {self.url}"
        if served != local:
            first = next((i for i, (a, b) in enumerate(zip(served, local)) if a != b), min(len(served), len(local)))
            raise DistillError(
                f"{where} does not share the student's tokenizer (a probe text is {len(served)} tokens there, "
                f"{len(local)} here, first difference at token {first}): word-level distillation needs the same "
                "vocabulary; serve a teacher of the student's family or use a student that shares its tokenizer"
            )
        for name in ("eos_token", "bos_token", "pad_token"):
            text, token_id = getattr(tok, name, None), getattr(tok, f"{name}_id", None)
            if text and token_id is not None and self._tokenize(text) != [token_id]:
                raise DistillError(
                    f"{where} does not share the student's special tokens ({name} {text!r} is not "
                    f"token {token_id} there): serve a teacher of the student's family"
                )
        last = len(tok) - 1
        detok = self._detokenize([last])
        if detok is not None and detok != tok.decode([last]):
            raise DistillError(
                f"{where} does not share the student's vocabulary (token {last} differs): "
                "serve a teacher of the student's family"
            )
        return f"same tokens on a {len(local)}-token probe and the special tokens"

    def _tokenize(self, text: str) -> list[int] | None:
        """Token ids from llama-cpp-python's ``/extras/tokenize``, llama.cpp's or vLLM's ``/tokenize``; None if none."""
        attempts: list[tuple[str, dict[str, Any]]] = [
            (f"{self.root}/extras/tokenize", {"input": text, "model": self.settings.model}),
            (
                f"{self.root}/tokenize",
                {
                    "content": text,
                    "prompt": text,
                    "model": self.settings.model,
                    "add_special": False,
                    "parse_special": True,
                    "add_special_tokens": False,
                },
            ),
        ]
        for url, body in attempts:
            reply = self._post(url, body, missing_ok=True)
            if reply is not None and isinstance(reply.get("tokens"), list):
                return [t if isinstance(t, int) else t.get("id") for t in reply["tokens"]]
        return None

    def _detokenize(self, ids: list[int]) -> str | None:
        for url in (f"{self.root}/extras/detokenize", f"{self.root}/detokenize"):
            reply = self._post(url, {"tokens": ids, "model": self.settings.model}, missing_ok=True)
            if reply is not None and isinstance(reply.get("text", reply.get("content")), str):
                return reply.get("text", reply.get("content"))
        return None

    # -- the teacher pass
    def targets(
        self,
        prompts: list[list[int]],
        answers: list[list[int] | None],
        max_new: int,
        top_k: int,
        temperature: float = 1.0,
    ) -> list[Targets]:
        """(answer ids, top-k log-probs, ids, log tail) per prompt, ``concurrency`` requests at a time."""
        if temperature != 1.0:
            raise DistillError("a served teacher's log-probs are at temperature 1: set loss.temperature = 1")
        start = time.perf_counter()
        self._vocabulary()  # built once, before the threads need it
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            results = list(pool.map(lambda item: self._one(item[0], item[1], max_new, top_k), zip(prompts, answers)))
        self.seconds += time.perf_counter() - start
        return results

    def _one(self, prompt: list[int], forced: list[int] | None, max_new: int, top_k: int) -> Targets:
        if forced is not None:  # a given answer (e.g. from the history): the server cannot score it here
            self._count("sequence_level")
            return self._one_hot(forced, top_k)
        text = self.tokenizer.decode(prompt, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        body = {
            "model": self.settings.model,
            "prompt": text,
            "max_tokens": max_new,
            "temperature": 0.0,
            "logprobs": top_k + EXTRA,
            "seed": 0,
            "repeat_penalty": 1.0,
            "frequency_penalty": 0.0,
            "presence_penalty": 0.0,
            "return_tokens_as_token_ids": True,
        }
        reply = self._post(f"{self.url}/completions", body)
        choices = reply.get("choices") if reply else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise DistillError(f"teacher at {self.url}: malformed answer (no choices)")
        choice = choices[0]
        stopped = choice.get("finish_reason") == "stop"
        word = self._word_level(choice, top_k, stopped, max_new)
        if word is not None:
            self._count("word_level")
            return word
        self._count("sequence_level")
        ids = list(self.tokenizer(choice.get("text") or "", add_special_tokens=False)["input_ids"])
        ids = ids[: max_new - 1] + [self.tokenizer.eos_token_id] if stopped or len(ids) < max_new else ids[:max_new]
        return self._one_hot(ids, top_k)

    def _word_level(self, choice: dict[str, Any], k: int, stopped: bool, max_new: int) -> Targets | None:
        """Word-level targets from a choice's log-probs, or None when they do not map onto the vocabulary."""
        positions = _positions(choice.get("logprobs"))
        if not positions:
            return None
        answer: list[int] = []
        rows: list[list[tuple[int, float]]] = []
        for chosen, top in positions:
            token_id = self._id(chosen)
            if token_id is None:
                return None
            mapped: dict[int, float] = {}
            for entry, logprob in top:
                entry_id = self._id(entry)
                if entry_id is not None and entry_id not in mapped:
                    mapped[entry_id] = logprob
            answer.append(token_id)
            rows.append(sorted(mapped.items(), key=lambda item: -item[1])[:k])
        # llama.cpp's server reports the special token it stopped on, with its log-probs; others leave it out
        served_stop = stopped and answer[-1] in self.tokenizer.all_special_ids
        text = choice.get("text")
        spelled = answer[:-1] if served_stop else answer
        if isinstance(text, str) and self.tokenizer.decode(spelled, clean_up_tokenization_spaces=False) != text:
            return None  # the mapped tokens do not spell the answer: do not guess
        if stopped and not served_stop and len(answer) < max_new:
            answer.append(self.tokenizer.eos_token_id)
            rows.append([(self.tokenizer.eos_token_id, 0.0)])  # not served: a one-hot target on end-of-turn
        return self._pack(answer, rows, k)

    def kd_line(self) -> str:
        """What the pass (this run's part of it, over every rank) gave: word-level targets or sequence-level only."""
        done = self.word_level + self.sequence_level
        if not done:
            return "every shard came from the cache"
        line = (
            f"{self.word_level}/{done} answers with word-level targets (top-k log-probs mapped onto the student's "
            f"vocabulary), {self.sequence_level} sequence-level only"
        )
        if self.word_level == 0:
            line += " (the server returns no log-probs that map one-to-one: sequence-level KD on the teacher's answers)"
        if self.padded_positions:
            line += (
                f"; {self.padded_positions} positions had fewer than top_k mapped tokens (padded at zero probability)"
            )
        return line

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def _one_hot(self, answer: list[int], k: int) -> Targets:
        return self._pack(answer, [[(token, 0.0)] for token in answer], k)

    def _pack(self, answer: list[int], rows: list[list[tuple[int, float]]], k: int) -> Targets:
        vocab = len(self.tokenizer)
        values = np.full((len(answer), k), -np.inf, dtype=np.float64)
        indices = np.zeros((len(answer), k), dtype=np.int64)
        tail = np.empty(len(answer), dtype=np.float64)
        for i, row in enumerate(rows):
            taken = {token for token, _ in row}
            pads = (token for token in range(vocab) if token not in taken)  # distinct ids at zero probability
            if len(row) < k and any(value < 0.0 for _, value in row):
                self._count("padded_positions")
            for j in range(k):
                token, value = row[j] if j < len(row) else (next(pads), -np.inf)
                indices[i, j], values[i, j] = token, value
            mass = float(np.exp(values[i]).sum())
            tail[i] = np.log(1.0 - mass) if mass < 1.0 - 1e-8 else -np.inf
        return answer, values.astype(np.float16), indices.astype(index_dtype(vocab)), tail.astype(np.float32)

    def _id(self, token: Any) -> int | None:
        """A served token's id in the student's vocabulary, or None when it does not map one-to-one."""
        if isinstance(token, dict):
            if isinstance(token.get("id"), int):
                return token["id"]
            if isinstance(token.get("bytes"), list) and token["bytes"]:
                token = bytes(token["bytes"]).decode("utf-8", errors="replace")
            else:
                token = token.get("token")
        if not isinstance(token, str):
            return None
        if token.startswith("token_id:") and token[9:].isdigit():
            return int(token[9:])
        return self._vocabulary().get(token)

    def _vocabulary(self) -> dict[str, int]:
        """Decoded text → id for every token whose text no other token shares (built once)."""
        if self._by_text is None:
            texts = self.tokenizer.batch_decode(
                [[i] for i in range(len(self.tokenizer))], clean_up_tokenization_spaces=False
            )
            counts: dict[str, int] = {}
            for text in texts:
                counts[text] = counts.get(text, 0) + 1
            self._by_text = {text: i for i, text in enumerate(texts) if counts[text] == 1 and "\ufffd" not in text}
        return self._by_text

    # -- HTTP
    def _post(self, url: str, body: dict[str, Any], missing_ok: bool = False) -> dict[str, Any] | None:
        """POST JSON with retries (connection failures, 429, 5xx); None for a missing endpoint when ``missing_ok``."""
        settings = self.settings
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        timeout = httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s)
        attempts = max(0, settings.retries) + 1
        problem = ""
        for attempt in range(attempts):
            if attempt:
                time.sleep(BACKOFF_S * 2 ** (attempt - 1))
            try:
                response = httpx.post(url, json=body, headers=headers, timeout=timeout)
            except httpx.TimeoutException:
                problem = f"no answer within {settings.timeout_s:g} s"
                continue
            except httpx.HTTPError as exc:
                problem = f"cannot connect ({str(exc) or type(exc).__name__}); is it running?"
                continue
            if missing_ok and response.status_code in (404, 405, 422, 400, 501):
                return None
            if response.status_code in RETRY_STATUSES:
                problem = f"HTTP {response.status_code}"
                continue
            if response.status_code >= 400:
                detail = response.text.strip().replace("\n", " ")[:200]
                problem = f"HTTP {response.status_code}: {detail}"
                break
            try:
                value = response.json()
            except ValueError:
                problem = "malformed answer (not JSON)"
                break
            if isinstance(value, dict):
                return value
            problem = "malformed answer (not a JSON object)"
            break
        raise DistillError(
            self._scrub(
                f"teacher at {url}: {problem} (after {attempt + 1} attempt(s)); "
                "finished shards are cached: run again to resume"
            )
        )

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text


def _positions(logprobs: Any) -> list[tuple[Any, list[tuple[Any, float]]]]:
    """(chosen token, [(token, log-prob)…]) per answer position, from the completions (``tokens``/``top_logprobs``)
    or the chat (``content`` entries) log-prob format; [] when absent or malformed."""
    if not isinstance(logprobs, dict):
        return []
    if isinstance(logprobs.get("content"), list):  # chat format, llama.cpp's server
        return [
            (entry, [(top, float(top.get("logprob", -np.inf))) for top in entry.get("top_logprobs") or []])
            for entry in logprobs["content"]
            if isinstance(entry, dict)
        ]
    tokens, tops = logprobs.get("tokens"), logprobs.get("top_logprobs")
    if not isinstance(tokens, list) or not isinstance(tops, list) or len(tokens) != len(tops):
        return []
    if not all(isinstance(top, dict) for top in tops):
        return []
    return [(token, [(text, float(value)) for text, value in top.items()]) for token, top in zip(tokens, tops)]


@dataclass
class ChatTeacher(ServedTeacher):
    """A teacher behind ``/v1/chat/completions`` whose tokenizer may differ from the student's (Gemma for a SmolLM2
    student, a hosted model): sequence-level KD on its answers, which the student's tokenizer re-tokenises (one-hot
    targets: forward KL on them is the cross-entropy on the teacher's answer). The teacher pass hands it chats, not
    token ids (``wants_messages``); a system message is folded into the first user turn, since some chat templates
    (Gemma's) have no system role and would drop it. It also writes text for a prompt (:meth:`ask`)."""

    wants_messages = True

    def targets(  # type: ignore[override]
        self,
        prompts: list[list[dict[str, str]]],
        answers: list[list[int] | None],
        max_new: int,
        top_k: int,
        temperature: float = 1.0,
    ) -> list[Targets]:
        """(answer ids in the student's vocabulary, one-hot top-k rows, ids, tail) per chat."""
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            results = list(pool.map(lambda item: self._answer(item[0], item[1], max_new, top_k), zip(prompts, answers)))
        self.seconds += time.perf_counter() - start
        return results

    def _answer(self, chat: list[dict[str, str]], forced: list[int] | None, max_new: int, top_k: int) -> Targets:
        self._count("sequence_level")
        if forced is not None:
            return self._one_hot(forced, top_k)
        text = self.chat(chat, max_new)
        ids = list(self.tokenizer(text.strip(), add_special_tokens=False)["input_ids"])[: max_new - 1]
        return self._one_hot(ids + [self.tokenizer.eos_token_id], top_k)

    def ask(self, prompt: str, max_tokens: int = 200) -> str:
        """The teacher's answer to one user message (e.g. "write questions about …")."""
        return self.chat([{"role": "user", "content": prompt}], max_tokens)

    def chat(self, chat: list[dict[str, str]], max_tokens: int) -> str:
        """The teacher's greedy answer to a chat (its system message folded into the first user turn)."""
        body = {
            "model": self.settings.model,
            "messages": fold_system(chat),
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "seed": 0,
        }
        reply = self._post(f"{self.url}/chat/completions", body)
        try:
            content = reply["choices"][0]["message"]["content"]  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            content = None
        if not isinstance(content, str):
            raise DistillError(f"teacher at {self.url}: malformed answer (no message content)")
        return content


def fold_system(chat: list[dict[str, str]]) -> list[dict[str, str]]:
    """The chat with its system message (if any) put before the first user message's text."""
    if not chat or chat[0]["role"] != "system":
        return chat
    system, rest = chat[0]["content"], [dict(m) for m in chat[1:]]
    first = next((m for m in rest if m["role"] == "user"), None)
    if first is None:
        return [{"role": "user", "content": system}, *rest]
    first["content"] = f"{system}\n\n{first['content']}"
    return rest


def first_model(settings: TeacherSettings) -> str:
    """The model an endpoint serves (``/v1/models``' first id), '' when it does not say; a one-line error when
    nothing answers there within the connect timeout."""
    url = settings.url.rstrip("/")
    try:
        response = httpx.get(
            f"{url}/models", timeout=httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s)
        )
    except httpx.TimeoutException:
        raise DistillError(f"teacher at {url}: no answer within {settings.timeout_s:g} s") from None
    except httpx.HTTPError as exc:
        raise DistillError(
            f"teacher at {url}: cannot connect ({str(exc) or type(exc).__name__}); is it running?"
        ) from None
    try:
        data = response.json().get("data") if response.status_code == 200 else None
    except ValueError:
        data = None
    return str(data[0].get("id", "")) if isinstance(data, list) and data and isinstance(data[0], dict) else ""
