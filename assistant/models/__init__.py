"""Models: GGUF files, the registry of the user's models, llama.cpp engines and their manager."""
