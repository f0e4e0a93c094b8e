"""Your documents, privately: an on-device index of your files and its search.

``reader`` turns a file into text blocks (and refuses what it should not read), ``chunking`` cuts them into
passages along the document's own structure, ``embedding`` gives each passage a vector with a model whose weights
ship in a Python package, ``index`` keeps the app's database up to date with a folder, and ``search`` finds
passages by full text (FTS5, BM25) and by vector, merged by reciprocal rank fusion.
"""
