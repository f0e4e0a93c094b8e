"""The ``assistant`` command: the parser and its one error path (``main``), what the command groups share
(``common``), and one module per command group (``ask`` with ``ask_options``, ``chat``, ``history``,
``models``, ``persona``, ``distill``, ``serve``, ``completion``). argparse stays in this package: the
domain gets typed values.

A front door: may import anything in ``assistant``, and ``distill_tools`` only lazily (torch must not load
for the other commands). Nothing in ``assistant`` imports it but ``assistant.__main__``.
"""
