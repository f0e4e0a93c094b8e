"""The local OpenAI-compatible API server (`assistant serve`)."""
