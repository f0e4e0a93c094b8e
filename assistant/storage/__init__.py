"""Storage: the history database and the files assistant writes.

Owns the SQLite database (``store``: its one owner, sqlite-utils underneath; ``migrations``: its schema in
numbered steps; ``rows``: the typed rows it returns; ``export``: a conversation as Markdown or JSON) and
atomic file writes (``files``). Nothing else touches the database.

May import only the root package (``assistant``: AssistantError); every other layer builds on this one.
"""
