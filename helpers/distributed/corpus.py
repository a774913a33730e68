"""Notebook 1's corpus encoded on Ray, into the embedding cache the driver then reads.

:func:`encode_corpus_on_ray` fills the cache entry that ``encoder.encode_corpus(texts)``
will read, for the corpus texts :func:`helpers.evaluation.evaluate_configuration` encodes
(:func:`corpus_texts`): the driver opens the entry (its key: the encoder's
``fingerprint("document")`` and the texts, exactly as the driver's own call computes it),
finds which chunks are missing, and hands them in shards to Ray workers, one actor per
device, each building the same encoder and writing the same content-keyed chunks
(:meth:`helpers.cache.EmbeddingCache.compute_chunks`). ``evaluate_configuration`` then
reads every corpus chunk from the cache, as after a local run.

Why an actor pool (:class:`ray.util.ActorPool`) and not Ray Data ``map_batches``: the unit
of work is a cache chunk, whose texts must reach the encoder exactly as the local run
gives them (one chunk at a time, batches formed within it) and whose vectors must be
written under the chunk's lock by the worker that computed them; Ray Data would re-cut
the corpus into its own blocks and batches, move the vectors back through its object
store, and bring its streaming executor's start-up and memory policy for what is one
pass over a list of chunks. An actor keeps its model loaded across shards, and the pool
gives each idle actor the next shard, so a slow node takes fewer.

Same numbers: a chunk's vectors depend only on its texts, the model and its settings
(every setting that shapes them is in the fingerprint, which each worker checks against
the driver's), and the batch size: :meth:`helpers.encoding.EncodingPipeline.encode_stream`
sorts and batches the texts within each chunk (it tokenises ahead across chunks, but no
batch spans two), as do ``SentenceTransformer.encode`` and ``FlagModel`` given one
chunk at a time. So a worker's chunk gets the bytes the local run would write. Ray gives
a worker ``OMP_NUM_THREADS`` = its CPUs, so torch runs with another thread count than the
driver: on the CPUs tested (x86_64, 2 cores) 1 and 2 threads give bitwise the
same vectors (checked by the tests through Ray); a cluster whose nodes have other CPU
types (vector instructions) may differ in the last bits, as two local runs on those
machines would.

Lost workers: an actor that dies (killed, out of memory, node lost) is restarted
(``max_restarts``) and its shard retried (``max_task_retries``): the chunks it finished
are read, the lock of the chunk it was computing (its holder dead) is taken over, and
nothing is computed twice. A whole run killed (the driver included) resumes from the
finished chunks, like a local one.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from helpers.cache import EmbeddingCache, EntryPlan
from helpers.data import RetrievalData
from helpers.distributed.session import for_workers
from helpers.evaluation import corpus_texts
from helpers.models import CachingEncoder, EncoderBase, EncoderSpec, build_encoder, device_type

logger = logging.getLogger(__name__)

MAX_RESTARTS = 3
"""Times a Ray worker that died is restarted (Ray's ``max_restarts``)."""

MAX_TASK_RETRIES = 3
"""Times a shard whose worker died is retried (Ray's ``max_task_retries``)."""


@dataclass(frozen=True)
class CorpusRunReport:
    """What one :func:`encode_corpus_on_ray` run did.

    Attributes:
        passages: the corpus's passages (rows of the cache entry).
        chunks: the entry's chunks.
        chunks_computed: chunks the workers encoded in this run.
        chunks_found: chunks already in the cache (before the run, or written meanwhile by
            another run or by a worker that then died), read, not encoded.
        workers: Ray workers (actors) started; 0 when every chunk was found.
        seconds: wall time of the whole call (Ray's start and the checks included).
        start_seconds: wall time to start or join Ray.
        ready_seconds: wall time from creating the workers until the first was ready
            (its model loaded and its fingerprint checked).
        threads_per_worker: torch's CPU threads in each worker (0 when none started).
        key: the cache entry's key.
    """

    passages: int
    chunks: int
    chunks_computed: int
    chunks_found: int
    workers: int
    seconds: float
    start_seconds: float
    ready_seconds: float
    threads_per_worker: int
    key: str

    def as_dict(self) -> dict[str, Any]:
        """The report as a JSON-serialisable dict."""
        return asdict(self)


def worker_spec(encoder: EncoderBase, device: str, workers: int) -> EncoderSpec:
    """What a Ray worker loads to build ``encoder``'s model again, on its own device.

    Args:
        encoder: the driver's encoder (the one a :class:`~helpers.models.CachingEncoder`
            wraps).
        device: the worker's device (``"cpu"``, or ``"cuda:0"``: the GPU Ray gives it).
        workers: the pipeline's tokenising threads for a worker that tokenises in
            threads (a GPU). When the driver's pipeline tokenises in line (0 threads), so
            do the workers: in line it batches by token count, with threads by characters,
            and the vectors would differ from the driver's by rounding.

    Returns:
        The spec for :func:`helpers.models.build_encoder`.
    """
    return EncoderSpec(
        model=encoder.name,
        path=for_workers(encoder.path),
        name=encoder.name,
        revision=encoder.revision,
        backend=encoder.backend,
        devices=(device,),
        dtype=encoder.dtype,
        query_instruction=encoder.query_instruction,
        batch_size=encoder.batch_size,
        show_progress=False,
        workers=0 if getattr(getattr(encoder, "pipeline", None), "workers", None) == 0 else workers,
        normalize=encoder.normalize,
    )


def fingerprint_difference(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> str:
    """The settings in which two fingerprints differ, as ``name: ours vs theirs`` ("" when
    none), values compared as JSON."""

    def as_json(value: Any) -> str:
        return json.dumps(value, sort_keys=True, default=str)

    names = sorted(set(ours) | set(theirs))
    return "; ".join(
        f"{name}: {as_json(ours.get(name))} here vs {as_json(theirs.get(name))} on the worker"
        for name in names
        if as_json(ours.get(name)) != as_json(theirs.get(name))
    )


class ShardWorker:
    """One Ray worker (made an actor by :func:`encode_corpus_on_ray`): the encoder built
    once, then shards of chunks computed into the cache.

    Args:
        spec: the encoder to build (:func:`worker_spec`).
        cache_root: the cache folder (an absolute path every node mounts).
        chunk_size: the cache's chunk size (an entry keeps its own).
        lock_stale_s: the cache's ``lock_stale_s``.
        lock_wait_s: the cache's ``lock_wait_s``.
        threads: torch's CPU threads.
    """

    def __init__(
        self,
        spec: EncoderSpec,
        cache_root: str,
        chunk_size: int,
        lock_stale_s: float,
        lock_wait_s: float,
        threads: int,
    ) -> None:
        import torch

        from helpers.notebook import setup

        setup(progress=False)
        torch.set_num_threads(threads)
        self.encoder = build_encoder(spec)
        self.cache = EmbeddingCache(
            cache_root, chunk_size, lock_stale_s=lock_stale_s, lock_wait_s=lock_wait_s
        )

    def ready(self) -> dict[str, Any]:
        """Where this worker runs and what its vectors are keyed on:
        ``{"fingerprint", "host", "pid", "threads"}``."""
        import torch

        return {
            "fingerprint": self.encoder.fingerprint("document"),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "threads": torch.get_num_threads(),
        }

    def encode_shard(
        self, key: str, settings: dict[str, Any], rows: int, chunks: dict[int, list[str]]
    ) -> dict[str, int]:
        """Make sure the chunks of one shard are in the cache
        (:meth:`helpers.cache.EmbeddingCache.compute_chunks`).

        Returns:
            ``{"computed", "found", "waited", "pid"}``.
        """
        work = self.cache.compute_chunks(
            key,
            settings,
            rows,
            chunks,
            self.encoder.encode_corpus,
            stream_fn=self.encoder.stream_fn("document"),
        )
        return {
            "computed": work.computed,
            "found": work.found,
            "waited": work.waited,
            "pid": os.getpid(),
        }


def _positive_int(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        expected = "None or a positive integer" if allow_none else "a positive integer"
        raise ValueError(f"{name}: expected {expected}, got {value!r}")


def _amount(name: str, value: Any, minimum: float, strict: bool) -> None:
    """``value`` is None or a number > (``strict``) or >= ``minimum``."""
    if value is None:
        return
    number = not isinstance(value, bool) and isinstance(value, int | float)
    if not number or not (value > minimum if strict else value >= minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise ValueError(f"{name}: expected None or a number {bound}, got {value!r}")


def _cached_model(encoder: Any) -> tuple[EmbeddingCache, EncoderBase]:
    """The cache and the model of notebook 1's encoder.

    Raises:
        ValueError: naming ``cache_dir`` when the encoder has no cache, or ``encoder``
            when it is not one :func:`helpers.models.load_encoder` builds.
    """
    if isinstance(encoder, EncoderBase):
        raise ValueError(
            "cache_dir: the encoder has no embedding cache; encode_corpus_on_ray writes the "
            "corpus vectors into the cache, which the driver then reads: load it with "
            "load_encoder(..., cache_dir=...) on a folder every Ray node mounts at the "
            "same path"
        )
    if not isinstance(encoder, CachingEncoder) or not isinstance(encoder.encoder, EncoderBase):
        raise ValueError(
            "encoder: expected the encoder of helpers.models.load_encoder(..., cache_dir=...), "
            f"got {type(encoder).__name__}"
        )
    model = encoder.encoder
    if len(model.devices) > 1:
        raise ValueError(
            f"encoder: loaded on several devices ({model.device}); on Ray each worker "
            "encodes on one device: load the encoder on one (device='cuda' or 'cpu')"
        )
    if device_type(model.device) not in {"cpu", "cuda"}:
        raise ValueError(f"encoder: Ray workers encode on 'cpu' or 'cuda', not {model.device!r}")
    return encoder.cache, model


def _resources(
    num_cpus: int,
    num_gpus: int,
    nodes: int,
    gpu: bool,
    workers: int | None,
    num_cpus_per_worker: float | None,
    num_gpus_per_worker: float | None,
    node_cpus: float | None = None,
) -> tuple[int, float, float]:
    """``(workers, CPUs each, GPUs each)`` on a cluster of ``num_cpus`` CPUs, ``num_gpus``
    GPUs and ``nodes`` nodes (see :func:`encode_corpus_on_ray` for the defaults); by
    default a worker asks for no more CPUs than ``node_cpus`` (the smallest node a worker
    may run on), so that nodes of different sizes can all hold one.

    Raises:
        ValueError: naming the parameter, when the cluster cannot hold the workers.
    """
    if gpu:
        gpus_each = 1.0 if num_gpus_per_worker is None else float(num_gpus_per_worker)
        if gpus_each <= 0:
            raise ValueError(
                "num_gpus_per_worker: the encoder runs on 'cuda', so every worker needs a "
                f"GPU share (> 0), got {num_gpus_per_worker!r}"
            )
        if workers is None:
            workers = int(num_gpus // gpus_each)
            if workers < 1:
                raise ValueError(
                    f"num_gpus_per_worker: the cluster has {num_gpus} GPU(s), not enough for "
                    f"one worker of {gpus_each:g} GPU; the encoder runs on 'cuda'"
                )
    else:
        if num_gpus_per_worker:
            raise ValueError(
                "num_gpus_per_worker: the encoder runs on 'cpu' (its vectors are keyed on "
                "the device type); load it with device='cuda' to encode on GPU workers, "
                f"got {num_gpus_per_worker!r}"
            )
        gpus_each = 0.0
        if workers is None:
            workers = max(1, nodes)
    if workers * gpus_each > num_gpus:
        raise ValueError(
            f"workers: {workers} worker(s) of {gpus_each:g} GPU need {workers * gpus_each:g} "
            f"GPU(s); the cluster has {num_gpus}"
        )
    if num_cpus_per_worker is None:
        cpus_each = float(max(1, num_cpus // workers))
        if node_cpus is not None:
            cpus_each = float(max(1, min(cpus_each, node_cpus)))
    else:
        cpus_each = float(num_cpus_per_worker)
    if workers * cpus_each > num_cpus:
        raise ValueError(
            f"workers: {workers} worker(s) of {cpus_each:g} CPU(s) need "
            f"{workers * cpus_each:g} CPUs; the cluster has {num_cpus}"
        )
    return workers, cpus_each, gpus_each


def _smallest_node_cpus(gpu: bool) -> float | None:
    """The CPUs of the smallest alive node a worker may run on (with a GPU when ``gpu``)."""
    import ray

    sizes = [
        float(node["Resources"].get("CPU", 0))
        for node in ray.nodes()
        if node.get("Alive") and (not gpu or node["Resources"].get("GPU", 0) > 0)
    ]
    return min((s for s in sizes if s > 0), default=None)


def encode_corpus_on_ray(
    encoder: Any,
    data: RetrievalData,
    *,
    ray_address: str = "",
    workers: int | None = None,
    num_gpus_per_worker: float | None = None,
    num_cpus_per_worker: float | None = None,
    chunks_per_shard: int = 1,
    show_progress: bool = False,
) -> CorpusRunReport:
    """Encode ``data``'s corpus on Ray workers into ``encoder``'s embedding cache.

    Afterwards ``encoder.encode_corpus(corpus_texts(data))`` (what
    :func:`helpers.evaluation.evaluate_configuration` calls) reads every chunk from the
    cache, bitwise the vectors a local run writes (see the module's docstring). Chunks
    already in the cache are not encoded again: with all of them there, Ray is not even
    started; a killed run resumes from its finished chunks.

    Each worker is a Ray actor holding the same model (rebuilt from the encoder's
    settings: the model's files and the project's virtual environment must be at the same
    paths on every node); its ``fingerprint("document")`` must equal the driver's.

    Args:
        encoder: notebook 1's encoder, from ``helpers.models.load_encoder(...,
            cache_dir=...)`` on one device; ``cache_dir`` must be on storage every node
            mounts at the same path (checked with
            :func:`helpers.distributed.check_shared_storage`).
        data: the collection (:func:`helpers.data.load_retrieval_data`).
        ray_address: ``""``: start Ray on this machine (stopped at the end); ``"auto"``,
            ``"host:port"`` or ``"ray://host:port"``: join that cluster. A Ray already
            initialised in this process is used as it is, and left running.
        workers: Ray workers (actors); None: one per GPU share on a GPU encoder
            (the cluster's GPUs / ``num_gpus_per_worker``), one per node on a CPU
            encoder. Never more than there are shards.
        num_gpus_per_worker: GPUs per worker (a GPU encoder only; None: 1; 0.5 puts two
            workers on each GPU).
        num_cpus_per_worker: CPUs per worker, also torch's threads in it (None: the
            cluster's CPUs shared evenly among the workers).
        chunks_per_shard: cache chunks per task given to a worker (the unit that is
            retried when a worker dies).
        show_progress: a progress bar over the chunks.

    Returns:
        What was computed and found, by how many workers, in how long.

    Raises:
        ValueError: naming ``cache_dir`` when the encoder has no cache; naming the
            parameter for a bad ``ray_address``, ``workers``, ``num_gpus_per_worker``,
            ``num_cpus_per_worker`` or ``chunks_per_shard``, or for workers the cluster
            cannot hold; naming ``encoder`` when a worker's fingerprint differs from the
            driver's (with the settings that differ).
        helpers.distributed.StorageError: when a node does not see ``cache_dir``.
        RuntimeError: when workers kept dying (more than :data:`MAX_RESTARTS` times):
            the chunks finished are kept, and a new run resumes from them.
    """
    from helpers.distributed.session import check_executor

    began = time.monotonic()
    check_executor("ray", ray_address)
    _positive_int("workers", workers, allow_none=True)
    _positive_int("chunks_per_shard", chunks_per_shard)
    _amount("num_gpus_per_worker", num_gpus_per_worker, 0.0, strict=False)
    _amount("num_cpus_per_worker", num_cpus_per_worker, 0.0, strict=True)
    cache, model = _cached_model(encoder)
    texts = corpus_texts(data)
    settings = model.fingerprint("document")
    plan = cache.plan_entry(texts, settings)
    if not plan.missing:
        logger.info("corpus: all %d chunk(s) already in the cache", plan.chunks)
        return CorpusRunReport(
            passages=len(texts), chunks=plan.chunks, chunks_computed=0,
            chunks_found=len(plan.found), workers=0, seconds=time.monotonic() - began,
            start_seconds=0.0, ready_seconds=0.0, threads_per_worker=0, key=plan.key,
        )  # fmt: skip
    missing = list(plan.missing)
    shards = [
        {i: texts[slice(*plan.span(i))] for i in missing[start : start + chunks_per_shard]}
        for start in range(0, len(missing), chunks_per_shard)
    ]
    return _run(cache, model, settings, plan, shards, began, ray_address, show_progress,
                workers, num_cpus_per_worker, num_gpus_per_worker)  # fmt: skip


def _run(
    cache: EmbeddingCache,
    model: EncoderBase,
    settings: dict[str, Any],
    plan: EntryPlan,
    shards: list[dict[int, list[str]]],
    began: float,
    ray_address: str,
    show_progress: bool,
    workers: int | None,
    num_cpus_per_worker: float | None,
    num_gpus_per_worker: float | None,
) -> CorpusRunReport:
    """Start (or join) Ray, check the cache folder, start the workers, run the shards."""
    import ray
    from ray.util import ActorPool

    from helpers.distributed.session import check_shared_storage, connect, shutdown

    gpu = device_type(model.device) == "cuda"
    cluster = connect(ray_address)
    actors: list[Any] = []
    try:
        root = os.path.abspath(cache.root)
        check_shared_storage(cluster, {"cache_dir": root})
        node_cpus = _smallest_node_cpus(gpu)
        count, cpus_each, gpus_each = _resources(
            cluster.num_cpus, cluster.num_gpus, cluster.nodes, gpu,
            workers, num_cpus_per_worker, num_gpus_per_worker, node_cpus,
        )  # fmt: skip
        if count > len(shards):  # no idle workers: fewer, each with the larger share
            count, cpus_each, gpus_each = _resources(
                cluster.num_cpus, cluster.num_gpus, cluster.nodes, gpu,
                len(shards), num_cpus_per_worker, num_gpus_per_worker, node_cpus,
            )  # fmt: skip
        threads = max(1, int(cpus_each))
        spec = worker_spec(model, "cuda:0" if gpu else "cpu", max(1, threads - 1) if gpu else 0)
        remote = ray.remote(ShardWorker).options(
            num_cpus=cpus_each,
            num_gpus=gpus_each,
            max_restarts=MAX_RESTARTS,
            max_task_retries=MAX_TASK_RETRIES,
            scheduling_strategy="SPREAD",
        )
        created = time.monotonic()
        args = (spec, root, cache.chunk_size, cache.lock_stale_s, cache.lock_wait_s, threads)
        actors = [remote.remote(*args) for _ in range(count)]
        ready_seconds, worker_threads = _wait_ready(actors, settings, created)
        pool = ActorPool(actors)
        for shard in shards:
            pool.submit(
                lambda actor, part: actor.encode_shard.remote(plan.key, settings, plan.rows, part),
                shard,
            )
        computed = found = 0
        bar = _bar(show_progress, sum(len(s) for s in shards))
        try:
            while pool.has_next():
                try:
                    done = pool.get_next_unordered()
                except ray.exceptions.RayActorError as err:
                    raise RuntimeError(
                        f"a Ray worker died more than {MAX_RESTARTS} times; the chunks "
                        f"finished are kept in {root}: run again to resume ({err})"
                    ) from err
                computed += done["computed"]
                found += done["found"]
                if bar is not None:
                    bar.update(done["computed"] + done["found"])
        finally:
            if bar is not None:
                bar.close()
    finally:
        for actor in actors:
            ray.kill(actor)
        shutdown(cluster)
    report = CorpusRunReport(
        passages=plan.rows,
        chunks=plan.chunks,
        chunks_computed=computed,
        chunks_found=len(plan.found) + found,
        workers=count,
        seconds=time.monotonic() - began,
        start_seconds=cluster.start_seconds,
        ready_seconds=ready_seconds,
        threads_per_worker=worker_threads,
        key=plan.key,
    )
    logger.info(
        "corpus on Ray: %d chunk(s) computed, %d found, %d worker(s), %.1f s",
        report.chunks_computed, report.chunks_found, report.workers, report.seconds,
    )  # fmt: skip
    return report


def _wait_ready(
    actors: Sequence[Any], settings: Mapping[str, Any], created: float
) -> tuple[float, int]:
    """Wait until every worker has built its encoder and check its fingerprint against
    ``settings``; return the seconds from ``created`` until the first was ready, and the
    fewest torch threads a worker runs.

    Raises:
        ValueError: naming ``encoder`` when a worker's fingerprint differs.
        RuntimeError: when a worker could not build its encoder.
    """
    import ray

    pending = {actor.ready.remote(): actor for actor in actors}
    first: float | None = None
    threads: list[int] = []
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            pending.pop(ref)
            try:
                info = ray.get(ref)
            except ray.exceptions.RayActorError as err:
                raise RuntimeError(f"a Ray worker could not build the encoder: {err}") from err
            first = time.monotonic() - created if first is None else first
            threads.append(int(info["threads"]))
            difference = fingerprint_difference(settings, info["fingerprint"])
            if difference:
                raise ValueError(
                    f"encoder: the Ray worker on {info['host']} (pid {info['pid']}) builds "
                    f"an encoder whose vectors are keyed differently ({difference}); "
                    "every node needs the same library versions and model files at the "
                    "same paths"
                )
    return first or 0.0, min(threads, default=0)


def _bar(progress: bool, total: int) -> Any:
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="Encoding on Ray (chunks)", unit="chunk")
