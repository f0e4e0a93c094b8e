"""Model names as the command line takes and shows them: the registry's names, whatever was typed.

The lookups themselves are the registry's (``Registry.lookup``, ``shown_names``, ``name_of``), so the CLI, the
server and the chat UI resolve a name the same way; this module opens the registry for the commands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from assistant.cli.common import open_store

if TYPE_CHECKING:
    from assistant.models.registry import Registry


def opened_registry(readonly: bool = False) -> Registry:
    from assistant.models.registry import Registry  # deliberately lazy: it loads the store; off `--help`

    return Registry(open_store(readonly=readonly))


def model_key(registry: Registry, text: str) -> str:
    """What a ``--model`` value names (``Registry.lookup``): a registry name, or an absolute file path."""
    return registry.lookup(text)
