"""Devices and dtypes: which device a model runs on, in which dtype, in which chunk sizes.

One policy for notebook 1 and the MTEB glue:

- a device is ``"auto"`` (a GPU when one is visible), ``"cpu"``, ``"cuda"``, ``"cuda:N"``,
  or several (``"cuda:0,cuda:1"``), each checked to exist (:func:`parse_devices`);
- a dtype is one of :data:`DTYPES`: float32 (the default everywhere), bfloat16 on a GPU
  that has it (:func:`check_bf16`) or on a CPU that computes it natively, with AMX or
  AVX512-BF16 (:func:`cpu_bf16_support`, :func:`check_cpu_bf16`), float16 on a GPU only.
  A dtype that cannot run where it is asked is an error naming the parameter, never a
  silent fall-back to float32 (:func:`resolve_dtype`);
- when no dtype is asked, the model runs in float32 (notebook 1), or, where the caller
  asks for it (the MTEB glue, as mteb loads a model), in the dtype its checkpoint is
  stored in on a GPU and float32 on the CPU (:func:`load_dtype`);
- whatever the dtype, the encoders pool and normalise in float32
  (:mod:`helpers.models.backends`);
- the embedding cache's chunks hold more rows on a GPU (:func:`chunk_size_for`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from helpers.cache import DEFAULT_CHUNK_SIZE
from helpers.models.errors import ModelError

DTYPES = ("float32", "float16", "bfloat16")
DTYPES_HELP = (
    "'float32' (the default), 'bfloat16' (a GPU with it, or a CPU with AMX or AVX512-BF16) "
    "or 'float16' (a GPU only)"
)
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
"""The CPU flags (``/proc/cpuinfo``) of native bfloat16 arithmetic: Intel's AMX (Sapphire
Rapids and later) and AVX512-BF16 (Cooper Lake, Sapphire Rapids, AMD Zen 4 and later)."""
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
        ModelError: for a dtype not in :data:`DTYPES` (listing them and where each runs),
            or ``use_fp16`` with another dtype.
    """
    if dtype is None:
        dtype = "float16" if use_fp16 else "float32"
    if dtype not in DTYPES:
        raise ModelError(f"dtype: expected one of {list(DTYPES)}: {DTYPES_HELP}; got {dtype!r}")
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


@functools.cache
def _cpu_flags() -> frozenset[str] | None:
    """The CPU's flags from ``/proc/cpuinfo`` (x86 Linux), or None where there are none."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return None  # not x86 (ARM lists "Features"), or an unusual kernel


def cpu_bf16_support() -> str | None:
    """Whether this CPU computes bfloat16 natively: None when it does, else why not.

    Native means AMX (``amx_bf16``) or AVX512-BF16 (``avx512_bf16``), the instructions
    oneDNN's bfloat16 kernels use: a 2048 x 2048 matmul runs about 2.4 times as fast as in
    float32 with AVX512-BF16 (2 AMD EPYC cores, ``benchmarks/README.md``). Without them
    torch computes bfloat16 by conversion, usually slower than float32. Read from
    ``/proc/cpuinfo``'s flags; where there is none (not Linux, or not x86) from torch's
    own CPU detection (``torch.cpu._is_amx_tile_supported``,
    ``torch.cpu._is_avx512_bf16_supported``) when this torch has it.

    Returns:
        None when bfloat16 runs natively, else a sentence saying what is missing.
    """
    flags = _cpu_flags()
    if flags is not None:
        if any(flag in flags for flag in CPU_BF16_FLAGS):
            return None
        return "its flags in /proc/cpuinfo name neither amx_bf16 nor avx512_bf16"
    import torch

    checks = [
        getattr(torch.cpu, name, None)
        for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    ]
    if any(check is not None and check() for check in checks):
        return None
    return "no /proc/cpuinfo flags to read, and torch detects neither AMX nor AVX512-BF16"


def check_cpu_bf16() -> None:
    """Check that this CPU computes in bfloat16 natively (:func:`cpu_bf16_support`).

    Raises:
        ModelError: naming ``dtype`` when it does not, saying that float32 is the default.
    """
    reason = cpu_bf16_support()
    if reason:
        raise ModelError(
            f"dtype: 'bfloat16' on the CPU needs native bfloat16 arithmetic (AMX or "
            f"AVX512-BF16), which this CPU lacks ({reason}); without it bfloat16 is slower "
            "than float32. float32 is used by default: leave dtype empty or give 'float32'"
        )


def resolve_dtype(dtype: str | None, use_fp16: bool, devices: Sequence[str]) -> str:
    """The dtype a model runs in on ``devices``: :func:`check_dtype`'s, once checked to run
    there.

    float32 runs everywhere; bfloat16 on a GPU that has it (:func:`check_bf16`) and on a
    CPU with AMX or AVX512-BF16 (:func:`check_cpu_bf16`); float16 on a GPU only (on the
    CPU it is slow and rounds the scores). Nothing falls back silently: a dtype that
    cannot run on ``devices`` is an error.

    Raises:
        ModelError: as :func:`check_dtype`; naming ``dtype`` (or ``use_fp16``) for float16
            on a CPU; naming ``dtype`` for bfloat16 on a GPU or a CPU without it.
    """
    asked = dtype
    dtype = check_dtype(dtype, use_fp16)
    cpus = [d for d in devices if not is_gpu(d)]
    if dtype == "float16" and cpus:
        name = "dtype" if asked else "use_fp16"
        raise ModelError(
            f"{name}: float16 runs on a GPU only, and {','.join(devices)} is asked (on the "
            "CPU float16 is slow and rounds the scores). float32 is used by default: leave "
            f"{name} out, or give dtype='bfloat16' on a CPU with AMX or AVX512-BF16"
        )
    if dtype == "bfloat16":
        if cpus:
            check_cpu_bf16()
        if len(cpus) < len(devices):
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
