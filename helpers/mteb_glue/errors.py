"""The error the MTEB glue raises for what its caller can fix."""

from __future__ import annotations


class MtebGlueError(ValueError):
    """Raised for unknown tasks or benchmarks, or local data that does not fit its task.

    The message starts with the caller's name of the parameter at fault (``tasks:``,
    ``data_dir:``, ...) or names the file, and says what was expected.
    """
