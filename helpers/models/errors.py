"""The models' error."""

from __future__ import annotations


class ModelError(ValueError):
    """Raised when a model cannot be resolved or loaded, or a setting does not fit it."""
