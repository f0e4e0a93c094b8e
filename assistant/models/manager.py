"""The model manager: which model serves, loading it and hot-swapping it, in one place.

One per process, shared by the chat UI, ``assistant ask`` and the local server. The first
``load`` builds the engine; each later ``load`` swaps the model between two turns while the old
one keeps serving, and on failure the old one goes on serving and the error is raised. The server
also uses ``use`` (load or swap only when another model serves) and ``unload`` (free an idle model).
"""

from __future__ import annotations

from pathlib import Path

from assistant import AssistantError
from assistant.config import Config
from assistant.models.engine import Engine
from assistant.models.llama_model import release_heap
from assistant.models.prompt import Messages
from assistant.models.registry import DEFAULT_MODEL, Registry
from assistant.storage.store import Store


class NoModelError(AssistantError):
    """No model is loaded (yet, or the one asked for failed to load)."""


class ModelManager:
    """Loads the model the user asked for and swaps it for another; ``engine`` is the one serving."""

    def __init__(self, config: Config, store: Store, engine: Engine | None = None) -> None:
        self.config, self.store = config, store
        self._registry: Registry | None = None
        self._engine = engine
        self.key = config.model.default or DEFAULT_MODEL  # the registry name or path of the model serving
        self.error = ""  # why the last load failed ("" after a success)
        self._names: dict[str, str] = {}  # the registry name of each model served, by the engine's name for it

    @property
    def registry(self) -> Registry:
        """The user's models (opened on first use: a session given its engine never needs it)."""
        if self._registry is None:
            self._registry = Registry(self.store)
        return self._registry

    @property
    def engine(self) -> Engine:
        """The engine serving; ``NoModelError`` if no model has loaded."""
        if self._engine is None:
            raise NoModelError(self.error or "no model is loaded yet")
        return self._engine

    @property
    def ready(self) -> bool:
        return self._engine is not None

    @property
    def name(self) -> str:
        """The serving model's registry name, the one ``--model``, ``models list`` and ``/v1/models`` know ('' when
        none); a file the registry does not know goes by its stem (``path`` is its file)."""
        return self.label(self._engine.name) if self._engine is not None else ""

    @property
    def path(self) -> Path | None:
        """The serving model's file (None when none)."""
        return self._engine.path if self._engine is not None else None

    def label(self, engine_name: str) -> str:
        """The registry name of a model this manager served, from the engine's name for it (its file's stem, as in
        ``Stats.model``); the name itself for a model it never served."""
        engine = self._engine
        if engine_name not in self._names and engine is not None and engine_name == engine.name:
            self._names[engine_name] = self._registry_name(engine.path)  # an engine given, or swapped by its owner
        return self._names.get(engine_name, engine_name)

    def _registry_name(self, path: Path, key: str = "") -> str:
        try:
            return self.registry.name_of(path, key)
        except AssistantError:  # the catalog unreadable: the file still names the model
            return path.stem

    @property
    def base_model(self) -> bool:
        """The model serving is a base (completion) model, not tuned for chat (``gguf_info.is_base_model``)."""
        return self._engine is not None and bool(self._engine.model.info.base_model)

    @property
    def n_ctx(self) -> int:
        return self._engine.n_ctx if self._engine is not None else 0

    def resolve(self, key: str = "") -> Path:
        """The file of a registry name, packaged name, file stem or path (a clear error if unknown)."""
        return self.registry.resolve(key or self.key)

    def load(self, key: str = "", *, history: Messages | None = None, conversation: object = None) -> bool:
        """Load ``key`` (default: the configured model), or swap to it if a model serves; True if swapped.

        Given ``history`` (and its ``conversation``), a swapped-in model reads it while loading, so the
        next turn evaluates only the new message.
        """
        key = key or self.key
        try:
            key = self.registry.lookup(key)
            path = self.resolve(key)
            if self._engine is None:
                self._engine = Engine(path, n_ctx=self.config.model.n_ctx, threads=self.config.model.threads)
                swapped = False
            else:
                self._engine.swap(path, history=history, conversation=conversation)
                swapped = True
        except AssistantError as exc:
            self.error = str(exc)
            raise
        except Exception as exc:  # noqa: BLE001 - llama.cpp and the OS have many ways to fail; one clear line
            self.error = f"could not load {key}: {exc}"
            raise AssistantError(self.error) from None
        self.key, self.error = key, ""
        self._names[self._engine.name] = self._registry_name(path, self.key)
        return swapped

    def use(self, key: str) -> bool:
        """Serve with ``key``: loaded, or swapped in, unless it is the model serving already; True if it loaded."""
        if self._engine is not None and self.resolve(key) == self._engine.path:
            self.key = self.registry.lookup(key)
            return False
        self.load(key)
        return True

    def unload(self) -> bool:
        """Free the serving model (after the answer in progress); the next ``load`` loads afresh. False if none."""
        engine, self._engine = self._engine, None
        if engine is None:
            return False
        engine.close()
        release_heap()
        return True

    def forget(self, conversation: object) -> None:
        """Drop a conversation's cached state (it was deleted or rewritten)."""
        if self._engine is not None:
            self._engine.forget(conversation)

    def cancel(self) -> None:
        """Stop the answer being generated, from any thread."""
        if self._engine is not None:
            self._engine.cancel()

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
