"""Browser tests: the notebooks in JupyterLab, driven by headless Chromium.

A package, so that its ``conftest`` does not take the place of ``tests/conftest.py``, which
other test modules import as ``conftest``.
"""
