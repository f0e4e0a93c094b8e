"""The `assistant` command: the parser, and one module per command group."""
