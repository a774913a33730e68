"""Devices and dtypes: which device a model runs on, in which dtype, in which chunk sizes.

One policy for notebook 1 and the MTEB glue:

- a device is ``"auto"`` (a GPU when one is visible), ``"cpu"``, ``"cuda"``, ``"cuda:N"``,
  or several (``"cuda:0,cuda:1"``), each checked to exist (:func:`parse_devices`);
- a dtype is one of :data:`DTYPES`. Half precision runs on a GPU only: asked for the CPU
  it is replaced by float32 with a warning (slow there, and it changes the scores), and
  bfloat16 needs a GPU that has it (:func:`check_bf16`);
- when no dtype is asked, the model runs in float32 (notebook 1), or, where the caller
  asks for it (the MTEB glue, as mteb loads a model), in the dtype its checkpoint is
  stored in on a GPU and float32 on the CPU (:func:`load_dtype`);
- the embedding cache's chunks hold more rows on a GPU (:func:`chunk_size_for`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from helpers.cache import DEFAULT_CHUNK_SIZE
from helpers.models.errors import ModelError

logger = logging.getLogger(__name__)

DTYPES = ("float32", "float16", "bfloat16")
DeviceSpec = str | Sequence[str]
GPU_CHUNK_SIZE = 16384  # a GPU encodes 1,024 rows in ~20 ms: bigger chunks keep it busy


def is_gpu(device: str) -> bool:
    """Whether ``device`` names a GPU (``"cuda"``, ``"cuda:N"``)."""
    return str(device).startswith("cuda")


def device_type(device: str) -> str:
    """``"cuda"`` or ``"cpu"`` for a device or a comma-separated list (its first)."""
    return device.split(":")[0].split(",")[0]


def pick_device(device: str = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` when a GPU is visible, else ``"cpu"``; other values unchanged
    once checked to exist.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Raises:
        ModelError: naming ``device`` when a GPU is asked for (``"cuda"``, ``"cuda:N"``)
            and torch sees none, or not that one, with the devices it does see.
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        visible = ["cpu"] + [f"cuda:{i}" for i in range(count)]
        number = device.partition(":")[2]
        if device != "cuda" and not number.isdigit():
            raise ModelError(f"device: expected 'cuda' or 'cuda:N', got {device!r}")
        if count == 0 or (number and int(number) >= count):
            raise ModelError(
                f"device: {device!r} asked, but torch sees no such GPU "
                f"(torch.cuda.is_available() is {torch.cuda.is_available()}, torch "
                f"{torch.__version__}); visible devices: {', '.join(visible)}. Use 'auto' or "
                "'cpu', or install a CUDA build of torch on a machine with a GPU."
            )
    return device


def parse_devices(device: DeviceSpec) -> list[str]:
    """One device or several: ``"auto"``, ``"cpu"``, ``"cuda:1"``, ``"cuda:0,cuda:1"`` or a
    list such as ``["cuda:0", "cuda:1"]`` (``"auto"`` picks :func:`pick_device`).

    Raises:
        ModelError: for an empty list, a name that is not a string, or a GPU not visible.
    """
    names = device.split(",") if isinstance(device, str) else list(device)
    if not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise ModelError(
            f"device: expected 'auto', 'cpu', 'cuda', 'cuda:N' or a list of them, got {device!r}"
        )
    return [pick_device(n.strip()) for n in names]


def check_dtype(dtype: str | None, use_fp16: bool = False) -> str:
    """The dtype asked, whatever the device: ``dtype`` (one of :data:`DTYPES`; None:
    ``"float16"`` with ``use_fp16``, else ``"float32"``).

    Raises:
        ModelError: for a dtype not in :data:`DTYPES`, or ``use_fp16`` with another dtype.
    """
    if dtype is None:
        dtype = "float16" if use_fp16 else "float32"
    if dtype not in DTYPES:
        raise ModelError(f"dtype: expected one of {list(DTYPES)}, got {dtype!r}")
    if use_fp16 and dtype != "float16":
        raise ModelError(f"dtype: {dtype!r} contradicts use_fp16=True; give one of them")
    return dtype


def check_bf16() -> None:
    """Check that the visible GPU computes in bfloat16.

    Raises:
        ModelError: naming ``dtype`` when the GPU has no bfloat16 (compute capability
            under 8.0).
    """
    import torch

    if torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        raise ModelError(
            "dtype: this GPU has no bfloat16 (compute capability 8.0 or later needed); "
            "use 'float16'"
        )


def resolve_dtype(dtype: str | None, use_fp16: bool, devices: Sequence[str]) -> str:
    """The dtype a model runs in on ``devices``: :func:`check_dtype`'s, or ``"float32"``
    when a half precision is asked for a device that is not a GPU (with a warning).

    Raises:
        ModelError: as :func:`check_dtype`, or for bfloat16 on a GPU without it.
    """
    dtype = check_dtype(dtype, use_fp16)
    if dtype != "float32" and not all(is_gpu(d) for d in devices):
        logger.warning(
            "dtype %s ignored on %s: half precision is only used on a GPU; float32 is used",
            dtype,
            ",".join(devices),
        )
        return "float32"
    if dtype == "bfloat16":
        check_bf16()
    return dtype


def load_dtype(
    dtype: str | None,
    use_fp16: bool,
    devices: Sequence[str],
    checkpoint_on_gpu: bool = False,
) -> str | None:
    """The dtype to load a model in on ``devices``; None: the one its checkpoint is stored in.

    Args:
        dtype: the dtype asked (one of :data:`DTYPES`), or None / ``""``.
        use_fp16: float16 asked (FlagEmbedding's name for it).
        devices: where the model runs.
        checkpoint_on_gpu: with no dtype asked, keep the checkpoint's dtype on a GPU (as
            mteb loads a model); otherwise float32. On the CPU it is float32 either way.

    Returns:
        :func:`resolve_dtype`'s dtype, or None (the checkpoint's, on a GPU).

    Raises:
        ModelError: as :func:`resolve_dtype`.
    """
    if checkpoint_on_gpu and not dtype and not use_fp16 and all(is_gpu(d) for d in devices):
        return None
    return resolve_dtype(dtype or None, use_fp16, devices)


def model_dtype(dtype: str) -> dict[str, Any]:
    """transformers' ``from_pretrained`` keyword for loading in ``dtype`` directly (no
    second copy in the stored dtype), for sentence-transformers' ``model_kwargs``."""
    import torch

    return {"dtype": getattr(torch, dtype)}


def set_dtype(module: Any, dtype: str) -> None:
    """Cast a torch module's parameters to ``dtype`` (a name in :data:`DTYPES`)."""
    import torch

    module.to(dtype=getattr(torch, dtype))


def weights_dtype(module: Any) -> str:
    """The dtype a torch module's weights are in now (its first parameter's), e.g. ``"float32"``."""
    return str(next(module.parameters()).dtype).removeprefix("torch.")


def chunk_size_for(device: str) -> int:
    """The embedding cache's chunk size for encoding on ``device``: :data:`GPU_CHUNK_SIZE`
    on a GPU, else :data:`helpers.cache.DEFAULT_CHUNK_SIZE`."""
    return GPU_CHUNK_SIZE if is_gpu(device) else DEFAULT_CHUNK_SIZE
