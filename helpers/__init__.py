"""Helpers behind the embedding-evaluation notebooks.

Layers, lowest first (a module imports only from its layer or below; README "Layout"):
``io``, ``outputs``, ``hub``, ``notebook``; ``metrics``, ``stats``; ``data``; ``cache``;
``models``, ``encoding``; ``index``; ``mteb_glue``; ``evaluation``, ``reports``.
Nothing heavy is imported here and nothing is seeded at import.
"""

__version__ = "0.1.0"
