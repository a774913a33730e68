"""The helpers' encoding pipeline: tokenisation overlapped with the forward pass.

Where the time goes: on a GPU the forward pass of a small model such as
all-MiniLM-L6-v2 in fp16 runs at tens of thousands of passages per second, while
tokenising with the transformers tokenizer runs at a few thousand per second per core,
and ``SentenceTransformer.encode`` tokenises in the same thread as the forward pass, so
the GPU waits. This pipeline:

1. sorts the texts by length, longest first, so a batch holds texts of similar length
   and little padding: by token count when it tokenises in line (``workers=0``, the
   CPU's setting: each part is tokenised once, then sorted, 4,096 texts at a time), by
   characters otherwise (like sentence-transformers), so that tokenising can run in
   threads ahead of the GPU;
2. tokenises each batch with the model's Rust tokenizer (``tokenizers``, which releases
   the GIL) in a pool of ``workers`` threads, ahead of the GPU, across chunk boundaries;
3. builds the padded ``input_ids`` and ``attention_mask`` with numpy, pins them in page-
   locked memory and copies them to the device without blocking;
4. runs the transformer, pools (mean, CLS or max, as the model's sentence-transformers
   ``Pooling`` says) in float32 and L2-normalises when the model has a ``Normalize``
   module, and puts the rows back in input order.

It gives sentence-transformers' embeddings (the same tokens, the same pooling; tested)
for models made of ``Transformer`` + ``Pooling`` (+ ``Normalize``) with a fast
tokenizer. :func:`unsupported_reason` names what else falls back to
``SentenceTransformer.encode``.

On a CPU the forward pass is the limit and ``workers=0`` tokenises in line (threads
would take cores from the forward pass). Sorting by tokens rather than characters there
cuts the padding of MS MARCO passages in batches of 64 from 43% to 9% and raised
all-MiniLM-L6-v2's float32 rate by 1.34x (``benchmarks/README.md``); the vectors
differ from character-sorted batches by float rounding only (at most 2e-7 here).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections import deque
from collections.abc import Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

POOLING_MODES = ("mean", "cls", "max")
SPILL = 64  # batches kept on the device before they are copied to the host
SORT_WINDOW = 4096  # texts tokenised and sorted together in line: bounds a long part's memory
SUPPORTED_MODULES = ("Transformer", "Pooling", "Normalize")


class TokenIds(list):  # type: ignore[type-arg]
    """A batch already tokenised: one list of token ids per text (not padded)."""


class PipelineUnsupported(ValueError):
    """Raised when a model needs something the pipeline does not do (see the message)."""


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_workers(device: str) -> int:
    """Tokenising threads: none on a CPU (the forward pass needs every core), else all
    cores but one (the one that drives the GPU), at most 16."""
    if not str(device).startswith("cuda"):
        return 0
    return max(1, min(16, available_cores() - 1))


def unsupported_reason(st_model: Any) -> str | None:
    """Why the pipeline cannot reproduce this sentence-transformers model, or None.

    Supported: modules ``Transformer`` then ``Pooling`` (mean, CLS or max, prompt
    included) and optionally ``Normalize``; a fast tokenizer padding on the right; no
    lower-casing and no separate query or document lengths.
    """
    names = [type(module).__name__ for module in st_model]
    if names[:2] != ["Transformer", "Pooling"] or any(n not in SUPPORTED_MODULES for n in names):
        return f"modules {names}; the pipeline supports Transformer, Pooling[, Normalize]"
    transformer, pooling = st_model[0], st_model[1]
    tokenizer = getattr(transformer, "tokenizer", None)
    if tokenizer is None or not getattr(tokenizer, "is_fast", False):
        return "no fast (Rust) tokenizer"
    if getattr(tokenizer, "padding_side", "right") != "right":
        return "the tokenizer pads on the left"
    if getattr(transformer, "do_lower_case", False):
        return "the model lower-cases its input"
    if getattr(transformer, "query_length", None) or getattr(transformer, "document_length", None):
        return "the model has separate query and document lengths"
    if getattr(transformer, "processing_kwargs", None):
        return "the model sets its own processing arguments"
    modalities = getattr(transformer, "modality_config", None)
    if modalities is not None and (
        set(modalities) != {"text"}
        or modalities["text"].get("method_output_name", "last_hidden_state") != "last_hidden_state"
    ):
        return f"modalities {modalities}; the pipeline handles text through last_hidden_state"
    mode = _pooling_mode(pooling)
    if mode not in POOLING_MODES:
        return f"pooling {mode!r}; the pipeline supports {list(POOLING_MODES)}"
    if not getattr(pooling, "include_prompt", True):
        return "the pooling leaves the prompt out"
    return None


def _pooling_mode(pooling: Any) -> str:
    mode = getattr(pooling, "pooling_mode", None)
    if isinstance(mode, str):
        return {"cls_token": "cls", "mean_tokens": "mean", "max_tokens": "max"}.get(mode, mode)
    config = pooling.get_config_dict() if hasattr(pooling, "get_config_dict") else {}
    if "pooling_mode" in config:
        return str(config["pooling_mode"])
    for key, name in (("pooling_mode_mean_tokens", "mean"), ("pooling_mode_cls_token", "cls")):
        if config.get(key):
            return name
    if config.get("pooling_mode_max_tokens"):
        return "max"
    return "unknown"


def st_prompt(st_model: Any, prompt: str | None, kind: str | None) -> str:
    """The prompt ``SentenceTransformer.encode_query`` / ``encode_document`` (``kind``
    ``"query"`` / ``"document"``) or ``encode`` (``kind`` None) would put before each text:
    an explicit ``prompt`` wins, then the model's prompt named ``"query"`` (queries) or the
    first of ``"document"``, ``"passage"``, ``"corpus"`` (documents), then its default."""
    if prompt is not None:
        return prompt
    prompts = getattr(st_model, "prompts", None) or {}
    names = {"query": ("query",), "document": ("document", "passage", "corpus")}.get(kind or "", ())
    name = next((n for n in names if n in prompts), None)
    name = name or getattr(st_model, "default_prompt_name", None)
    return str(prompts.get(name) or "") if name else ""


def pipeline_or_none(st_model: Any, model: str, **kwargs: Any) -> EncodingPipeline | None:
    """:class:`EncodingPipeline` for ``st_model``, or None (with the reason logged) when
    the model needs ``SentenceTransformer.encode``. ``kwargs`` go to the pipeline."""
    try:
        return EncodingPipeline(st_model, **kwargs)
    except PipelineUnsupported as err:
        logger.warning("%s for %r: SentenceTransformer.encode is used instead", err, model)
        return None


class EncodingPipeline:
    """Encode texts with a sentence-transformers model at the forward pass's speed.

    The model's weights are shared with ``st_model`` (nothing is copied); its device and
    dtype are the pipeline's.

    Args:
        st_model: a loaded ``SentenceTransformer``.
        batch_size: texts per forward pass.
        workers: tokenising threads; None picks :func:`default_workers` for the device,
            0 tokenises in line.
        prefetch: batches tokenised ahead of the GPU; None means ``4 * workers`` (at
            least 2).
        progress: a progress bar (texts encoded, and their rate).
        normalize: L2-normalise the vectors; None: when the model has a ``Normalize``
            module (as ``SentenceTransformer.encode`` does by default).

    Raises:
        PipelineUnsupported: naming what the model needs (see :func:`unsupported_reason`).
        ValueError: for a batch size, worker count or prefetch that is not a positive
            integer (0 workers is allowed).
    """

    def __init__(
        self,
        st_model: Any,
        batch_size: int = 256,
        workers: int | None = None,
        prefetch: int | None = None,
        progress: bool = False,
        normalize: bool | None = None,
    ) -> None:
        import torch
        from tokenizers import Tokenizer

        reason = unsupported_reason(st_model)
        if reason:
            raise PipelineUnsupported(f"encoding pipeline: {reason}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
        transformer, pooling = st_model[0], st_model[1]
        self.model = transformer.auto_model
        self.model.eval()
        parameter = next(self.model.parameters())
        self.device = parameter.device
        self.dtype = parameter.dtype
        self.batch_size = batch_size
        if workers is None:
            workers = default_workers(str(self.device))
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ValueError(f"workers: expected an integer >= 0, got {workers!r}")
        self.workers = workers
        if prefetch is not None and (not isinstance(prefetch, int) or prefetch < 1):
            raise ValueError(f"prefetch: expected a positive integer, got {prefetch!r}")
        self.prefetch = prefetch or max(2, 4 * workers)
        self.progress = progress
        self.pooling = _pooling_mode(pooling)
        self.dim = int(self.model.config.hidden_size)
        has_module = any(type(m).__name__ == "Normalize" for m in st_model)
        self.normalize = has_module if normalize is None else normalize
        hf_tokenizer = transformer.tokenizer
        self.max_length = int(
            min(
                transformer.max_seq_length or hf_tokenizer.model_max_length,
                getattr(self.model.config, "max_position_embeddings", 1 << 30),
            )
        )
        self.tokenizer = Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(
            self.max_length, direction=getattr(hf_tokenizer, "truncation_side", "right")
        )
        self.pad_id = int(hf_tokenizer.pad_token_id or 0)
        self._pin = self.device.type == "cuda" and torch.cuda.is_available()

    # -- tokenising (worker threads) -----------------------------------------------

    def tokenize(self, texts: Sequence[str]) -> tuple[Any, Any]:
        """``(input_ids, attention_mask)`` as int64 tensors padded to the longest text
        (pinned when the model is on a GPU). Thread-safe; the Rust part runs without the GIL."""
        return self._pad(self._token_ids(texts))

    def _token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's token ids, truncated to ``max_length``, not padded."""
        encode = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)
        return [encoding.ids for encoding in encode(list(texts))]

    def _pad(self, sequences: Sequence[Sequence[int]]) -> tuple[Any, Any]:
        """``sequences`` as :meth:`tokenize` returns them: padded int64 tensors."""
        import torch

        lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
        width = int(lengths.max()) if len(sequences) else 0
        mask = np.arange(width) < lengths[:, None]
        ids = np.full((len(sequences), width), self.pad_id, dtype=np.int64)
        ids[mask] = np.fromiter(
            itertools.chain.from_iterable(sequences), dtype=np.int64, count=int(lengths.sum())
        )
        input_ids = torch.from_numpy(ids)
        attention_mask = torch.from_numpy(mask.astype(np.int64))
        if self._pin:
            input_ids, attention_mask = input_ids.pin_memory(), attention_mask.pin_memory()
        return input_ids, attention_mask

    # -- forward pass (calling thread) ---------------------------------------------

    def _embed(self, input_ids: Any, attention_mask: Any) -> Any:
        import torch

        ids = input_ids.to(self.device, non_blocking=True)
        mask = attention_mask.to(self.device, non_blocking=True)
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        elif self.pooling == "max":
            pooled = hidden.masked_fill(mask.unsqueeze(-1) == 0, -1e9).max(dim=1).values
        else:
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts`` in input order, float32, one row per text."""
        stream = self.encode_stream([texts], total=len(texts))
        try:
            return next(stream)
        finally:
            stream.close()  # shuts the tokenising threads down now, not at collection

    def encode_stream(
        self, parts: Iterable[Sequence[str]], total: int | None = None
    ) -> Generator[np.ndarray, None, None]:
        """Embeddings of each part in turn (float32, input order within each part).

        Tokenising runs ahead across part boundaries, so a caller that writes each part
        somewhere (the embedding cache's chunks) does not leave the GPU waiting at the
        start of the next part. Parts are read from ``parts`` lazily. ``total`` (texts)
        only sizes the progress bar.
        """
        import torch
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="Encoding", unit="text", disable=not self.progress)

        batches = self._batches(parts)
        pool = ThreadPoolExecutor(self.workers, "tokenize") if self.workers else None
        pending: deque[tuple[int, np.ndarray, Future[Any] | tuple[Any, Any] | None]] = deque()
        outputs: list[tuple[np.ndarray, Any]] = []  # on the device
        on_host: list[tuple[np.ndarray, np.ndarray]] = []  # moved off it every SPILL batches
        current = 0

        def submit() -> bool:
            item = next(batches, None)
            if item is None:
                return False
            part, rows, texts = item
            job: Future[Any] | tuple[Any, Any] | None = None
            if isinstance(texts, TokenIds):  # tokenised with its part, to sort it
                job = self._pad(texts)
            elif texts:
                job = pool.submit(self.tokenize, texts) if pool else self.tokenize(texts)
            pending.append((part, rows, job))
            return True

        try:
            while len(pending) < self.prefetch and submit():
                pass
            started = bool(pending)
            # inference mode is entered per step, never across a yield: the caller's code
            # between parts must not run inside it
            while pending:
                part, rows, job = pending.popleft()
                submit()
                if part != current:  # every batch of the previous part is on its way
                    yield self._assemble(on_host + [self._to_host(outputs)])
                    outputs, on_host, current = [], [], part
                if job is not None:
                    tensors = job.result() if isinstance(job, Future) else job
                    with torch.inference_mode():
                        outputs.append((rows, self._embed(*tensors)))
                    bar.update(len(rows))
                    if len(outputs) >= SPILL:  # bounds device memory for a long part
                        on_host.append(self._to_host(outputs))
                        outputs = []
            if started:
                yield self._assemble(on_host + [self._to_host(outputs)])
        finally:
            bar.close()
            if pool:
                pool.shutdown(wait=True, cancel_futures=True)

    def _batches(
        self, parts: Iterable[Sequence[str]]
    ) -> Iterator[tuple[int, np.ndarray, list[str] | TokenIds]]:
        """(part number, rows of the batch within its part, its texts or, tokenising in
        line, their token ids), longest first: by token count in line (within windows of
        :data:`SORT_WINDOW` texts, so a long part's token ids are never all in memory), by
        characters with worker threads (see the module's notes). An empty part is one empty
        batch, so every part number appears in turn."""
        for number, part in enumerate(parts):
            texts = list(part)
            if not texts:
                yield number, np.zeros(0, dtype=np.int64), []
                continue
            if self.workers:
                order = np.argsort([-len(text) for text in texts], kind="stable")
                for start in range(0, len(texts), self.batch_size):
                    rows = order[start : start + self.batch_size]
                    yield number, rows, [texts[i] for i in rows]
                continue
            for begin in range(0, len(texts), SORT_WINDOW):  # a window at a time
                sequences = self._token_ids(texts[begin : begin + SORT_WINDOW])
                order = np.argsort([-len(ids) for ids in sequences], kind="stable")
                for start in range(0, len(sequences), self.batch_size):
                    rows = order[start : start + self.batch_size]
                    yield number, rows + begin, TokenIds(sequences[i] for i in rows)

    def _to_host(self, outputs: list[tuple[np.ndarray, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """Batches on the device -> (their rows, their vectors as one float32 array)."""
        import torch

        if not outputs:
            return np.zeros(0, dtype=np.int64), np.zeros((0, self.dim), dtype=np.float32)
        with torch.inference_mode():
            vectors = torch.cat([v for _, v in outputs]).cpu().numpy()
        return np.concatenate([r for r, _ in outputs]), vectors

    def _assemble(self, pieces: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """One part's rows back in input order."""
        rows = np.concatenate([r for r, _ in pieces])
        result = np.empty((len(rows), self.dim), dtype=np.float32)
        result[rows] = np.concatenate([v for _, v in pieces])
        return result
