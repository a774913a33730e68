"""Helpers behind the embedding-evaluation notebooks.

Modules: ``data`` (loading collections), ``models`` (encoders), ``index`` (FAISS),
``metrics`` (IR metrics with trec_eval's definitions), ``reports`` (tables, files,
plots), ``io`` (atomic writes), ``notebook`` (set-up, paths), ``hub`` (reachability).
Nothing heavy is imported here and nothing is seeded at import.
"""

__version__ = "0.1.0"
