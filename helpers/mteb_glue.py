"""MTEB 2.x glue: the model's real identity, tasks from local folders, resumable runs, summaries.

What changed from the mteb 1.x calls of the FlagEmbedding tutorials:

* ``mteb.MTEB(tasks=...).run(model, output_folder=...)`` -> ``mteb.evaluate(model, tasks)``,
  which returns a ``ModelResult`` of ``TaskResult`` objects (here saved by
  :func:`run_tasks`, one JSON per task, atomically).
* ``MTEB_MAIN_EN`` -> ``mteb.get_benchmark("MTEB(eng, v1)")`` (56 tasks; CQADupstack is one
  aggregate task over its 12 forums); :func:`select_tasks` still takes the old name.
* ``mteb create_meta`` -> ``mteb create-model-results`` (Python: :func:`model_card`, which
  writes ``create_meta``'s ``model-index`` and merges into an existing README).

Results land in ``<output_dir>/<org>__<model>/<revision>/<Task>.json`` in mteb's
``TaskResult`` format with a ``model_meta.json`` beside them: the layout of mteb's result
cache and of the embeddings-benchmark/results repository, one level up
(``ResultCache(path)`` reads ``path/results/...``; :func:`result_cache` bridges that).
Each result's ``dataset_revision`` says what it was computed from
(:func:`data_fingerprint`): the official hub revision, or ``local:sha256:<hash>`` for
local files; resuming (:func:`is_finished`) and summaries (:func:`summarize`) count a
result only when that is the data of the task now.

A notebook's cells, in order::

    tasks = G.select_tasks(benchmark, tasks, task_types)
    sources = G.attach_local_data(tasks, data_root)          # or G.use_local_data(task, dir)
    outcomes = G.run_tasks(G.load_mteb_model(model), tasks, out)
    summary = G.summarize(G.load_task_results(folder), tasks, outcomes)
    G.per_task_frame(summary); G.averages_frame(summary); print(G.summary_text(summary))
    comparison = G.comparison_frame(summary, name, G.published_scores(), references)
    print(G.reproduction_summary(comparison, summary))
    print(G.failure_report(outcomes, tasks, data_root))
    G.model_card(name, tasks, out, card); print(G.submission_instructions(out, meta))
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import os
import shutil
import tempfile
import time
import traceback
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from helpers.cache import EmbeddingCache, chunk_size_for, library_versions, weights_id
from helpers.data import DataError, find_file, read_beir_jsonl, read_jsonl, read_qrels_tsv
from helpers.hub import hub_offline_reason
from helpers.io import (
    atomic_write,
    files_sha256,
    remove_stale_temporaries,
    write_json,
    write_text,
)
from helpers.models import DEFAULT_MODEL, pick_device, resolve_model

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

PUBLISHED_SCORES_FILE = (
    Path(__file__).resolve().parent.parent
    / "data"
    / "reference-scores"
    / ("mteb_reference_scores.json")
)


class MtebGlueError(ValueError):
    """Raised for unknown tasks or benchmarks, or local data that does not fit its task."""


# ---------------------------------------------------------------------------
# The model under test
# ---------------------------------------------------------------------------


def model_meta(model: str = DEFAULT_MODEL) -> Any:
    """mteb's ``ModelMeta`` for a model: the registry's entry when mteb knows the name.

    The embedded default is mteb's ``sentence-transformers/all-MiniLM-L6-v2`` at revision
    ``8b3219a9...``, the revision of the published results. A local folder gets the name
    ``local/<folder>`` and revision ``local``; an unknown hub id keeps its name with
    revision ``main``.
    """
    import mteb
    from mteb.models.model_meta import ModelMeta

    path = Path(model).expanduser()
    if path.exists():
        return ModelMeta.create_empty(
            overwrites=dict(name=f"local/{path.resolve().name}", revision="local")
        )
    try:
        return mteb.get_model_meta(model, fetch_from_hf=False)
    except TypeError:  # older signature without fetch_from_hf
        return mteb.get_model_meta(model)
    except Exception:  # noqa: BLE001 - not in mteb's registry
        return ModelMeta.create_empty(overwrites=dict(name=model, revision="main"))


def load_mteb_model(
    model: str = DEFAULT_MODEL,
    device: str = "auto",
    cache_dir: str | Path | None = None,
    batch_size: int | None = None,
    workers: int | None = None,
    pipeline: bool = True,
    dtype: str | None = None,
) -> Any:
    """Load a sentence-transformers model as an mteb encoder that carries its real identity.

    The weights load from the resolved path (the packaged copy for the embedded default,
    offline), and the wrapper's ``mteb_model_meta`` is replaced by :func:`model_meta`, so
    results are filed under the official name and revision instead of
    ``no_model_name_available``. Every text ``encode`` mteb makes goes through the same
    path as notebook 1: the helpers' pipeline (:mod:`helpers.encoding`; with
    ``pipeline=False``, or for a model it cannot reproduce, ``SentenceTransformer.encode``
    as mteb would call it) and, with ``cache_dir``, the embedding cache
    (:mod:`helpers.cache`).

    Args:
        model: hub id, local folder, or the embedded default's name.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        cache_dir: the embedding cache's folder; None: no cache.
        batch_size: the pipeline's texts per forward pass; None: 256 on a GPU, 64 on a
            CPU (where larger batches of short texts run slower). mteb's own
            ``batch_size`` applies to ``SentenceTransformer.encode``.
        workers: the pipeline's tokenising threads (None: by device).
        pipeline: use the helpers' pipeline where the model allows.
        dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"`` (half precision on a GPU
            only); None: on a GPU, the dtype the checkpoint is stored in (as mteb loads
            it), on the CPU float32.

    Raises:
        helpers.models.ModelError: when the model cannot be resolved or loaded.
    """
    from sentence_transformers import SentenceTransformer

    from helpers.encoding import pipeline_or_none
    from helpers.models import ModelError, model_dtype, resolve_dtype, set_dtype

    path, _ = resolve_model(model)
    device = pick_device(device)
    gpu = device.startswith("cuda")
    wanted = resolve_dtype(dtype, False, [device]) if dtype or not gpu else None
    try:
        st = SentenceTransformer(
            path, device=device, model_kwargs=model_dtype(wanted) if wanted else None
        )
    except Exception as err:  # noqa: BLE001
        raise ModelError(f"model: could not load {model!r} ({type(err).__name__}: {err})") from err
    if wanted:
        set_dtype(st, wanted)
    wrapper: Any = _wrapper_class()(st)
    wrapper.cache = EmbeddingCache(cache_dir, chunk_size_for(device)) if cache_dir else None
    size = batch_size or (256 if gpu else 64)
    wrapper.pipeline = (
        pipeline_or_none(st, model, batch_size=size, workers=workers) if pipeline else None
    )
    engine = "helpers-pipeline" if wrapper.pipeline else "mteb-sentence-transformers"
    wrapper.base_settings = _mteb_cache_settings(model, path, device, engine)
    wrapper.mteb_model_meta = model_meta(model)
    return wrapper


def _mteb_cache_settings(model: str, path: str, device: str, engine: str) -> dict[str, Any]:
    """The cache key's model part: name, weights, engine, device type and library
    versions (the dtype and the prompt are added at each ``encode``)."""
    meta = model_meta(model)
    return {
        "model": meta.name,
        "weights": weights_id(path, meta.revision),
        "backend": engine,
        "device": device.split(":")[0],
        "versions": library_versions(),
    }


def _wrapper_class() -> type:
    """mteb's sentence-transformers wrapper with its text encoding routed through the
    helpers' pipeline and the embedding cache (both optional)."""
    from datasets import Dataset
    from mteb.models.sentence_transformer_wrapper import (
        SentenceTransformerEncoderWrapper,
        _resolve_prompt,
    )
    from torch.utils.data import DataLoader

    from helpers.encoding import st_prompt

    class HelpersSentenceTransformerWrapper(SentenceTransformerEncoderWrapper):  # type: ignore[misc]
        cache: EmbeddingCache | None
        pipeline: Any
        base_settings: dict[str, Any]

        def encode(
            self,
            inputs: Any,
            *,
            task_metadata: Any,
            hf_split: str,
            hf_subset: str,
            prompt_type: Any = None,
            **kwargs: Any,
        ) -> Any:
            features = getattr(getattr(inputs, "dataset", None), "column_names", None) or []
            plain = super().encode
            if set(features) - {"text", "id", "title"} or (
                self.cache is None and not self.pipeline
            ):
                return plain(
                    inputs,
                    task_metadata=task_metadata,
                    hf_split=hf_split,
                    hf_subset=hf_subset,
                    prompt_type=prompt_type,
                    **kwargs,
                )
            texts = [text for batch in inputs for text in batch["text"]]
            kind = getattr(prompt_type, "value", None)
            prompt = st_prompt(
                self.model, _resolve_prompt(self.model_prompts, task_metadata, prompt_type), kind
            )
            settings = {
                **self.base_settings,
                # the dtype the model runs in: mteb loads a checkpoint in its stored dtype
                "dtype": str(next(self.model.parameters()).dtype).removeprefix("torch."),
                "prompt": prompt,
                "prompt_type": str(kind),
            }
            batch_size = kwargs.get("batch_size", 32)

            def encode_part(part: Any) -> Any:
                if self.pipeline:
                    return self.pipeline.encode([prompt + text for text in part])
                loader = DataLoader(Dataset.from_dict({"text": list(part)}), batch_size=batch_size)
                return np.asarray(
                    plain(
                        loader,
                        task_metadata=task_metadata,
                        hf_split=hf_split,
                        hf_subset=hf_subset,
                        prompt_type=prompt_type,
                        **kwargs,
                    ),
                    dtype=np.float32,
                )

            def stream(parts: Any) -> Any:
                return self.pipeline.encode_stream([prompt + t for t in part] for part in parts)

            if self.cache is None:
                return encode_part(texts)
            return self.cache.encode(
                texts, settings, encode_part, stream_fn=stream if self.pipeline else None
            )

    return HelpersSentenceTransformerWrapper


# ---------------------------------------------------------------------------
# Task selection
# ---------------------------------------------------------------------------


def _closest(name: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'A', 'B'?"`` with up to three close names, or ``""``.

    Compared case-insensitively (``"mteb(eng,v1)"`` and ``"mteb eng"`` find
    ``"MTEB(eng, v1)"``), the suggestions spelled as registered.
    """
    by_lower: dict[str, str] = {}
    for choice in choices:
        by_lower.setdefault(choice.lower(), choice)
    matches = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.5)
    return f"; did you mean {', '.join(repr(by_lower[m]) for m in matches)}?" if matches else ""


BENCHMARK_ALIASES: dict[str, str] = {"MTEB_MAIN_EN": "MTEB(eng, v1)"}
"""mteb 1.x names (as the FlagEmbedding tutorials use them) -> mteb 2.x benchmark names."""


def task_types() -> list[str]:
    """Every task type mteb knows (``Retrieval``, ``STS``, ``Classification``, ...)."""
    import mteb

    return sorted({t.metadata.type for t in mteb.get_tasks()})


def select_tasks(
    benchmark: str = "MTEB(eng, v1)",
    tasks: Sequence[str] = (),
    types: Sequence[str] = (),
    *,
    benchmark_param: str = "benchmark",
    task_param: str = "tasks",
    types_param: str = "task_types",
) -> list[Any]:
    """Tasks by benchmark, by name, and/or by type.

    Args:
        benchmark: a benchmark name such as ``"MTEB(eng, v1)"`` (the 56 tasks of the
            original English leaderboard) or ``"MTEB(eng, v2)"``; ignored when ``tasks``
            is given. mteb 1.x's ``"MTEB_MAIN_EN"`` is taken as ``"MTEB(eng, v1)"``, with
            a logged warning (:data:`BENCHMARK_ALIASES`).
        tasks: task names; overrides the benchmark.
        types: keep only these task types (e.g. ``["Clustering"]``).
        benchmark_param, task_param, types_param: the caller's names of these three
            parameters, used in error messages (notebook 2 calls its task ``task``).

    Returns:
        mteb task objects, in benchmark (or given) order.

    Raises:
        MtebGlueError: naming the parameter and an unknown benchmark, task or type, with
            the closest names (compared case-insensitively).
    """
    import mteb

    if types:
        known_types = task_types()
        unknown = [t for t in types if t not in known_types]
        if unknown:
            hint = _closest(unknown[0], known_types)
            raise MtebGlueError(
                f"{types_param}: unknown {unknown}{hint} Known types: {', '.join(known_types)}"
            )
    if tasks:
        selected = []
        with warnings.catch_warnings():  # instantiating beta tasks warns once per task
            warnings.simplefilter("ignore")
            for name in dict.fromkeys(tasks):
                task = _registered_task(name)
                if task is None:
                    registry = mteb.get_tasks(
                        exclude_superseded=False, exclude_private=False, exclude_beta=False
                    )
                    all_names = {t.metadata.name for t in registry}
                    raise MtebGlueError(
                        f"{task_param}: unknown task {name!r}{_closest(name, all_names)}"
                    )
                selected.append(task)
    else:
        if benchmark in BENCHMARK_ALIASES:
            logger.warning(
                "%s: %r is mteb 1.x's name; mteb 2.x calls it %r, which is used",
                benchmark_param,
                benchmark,
                BENCHMARK_ALIASES[benchmark],
            )
            benchmark = BENCHMARK_ALIASES[benchmark]
        try:
            selected = list(mteb.get_benchmark(benchmark).tasks)
        except Exception as err:  # noqa: BLE001
            names = list(BENCHMARK_ALIASES)
            for known in mteb.get_benchmarks():
                names += [known.name, *(getattr(known, "aliases", None) or ())]
            raise MtebGlueError(
                f"{benchmark_param}: unknown benchmark {benchmark!r}{_closest(benchmark, names)}"
            ) from err
    if types:
        selected = [t for t in selected if t.metadata.type in set(types)]
    return selected


# ---------------------------------------------------------------------------
# Local data for registered tasks
# ---------------------------------------------------------------------------


def required_columns(task: Any) -> list[str]:
    """The columns a task's evaluator reads, from the attributes of its task class."""
    columns: list[str] = []
    for attr in (
        "column_names",
        "input_column_name",
        "input1_column_name",
        "input2_column_name",
        "label_column_name",
    ):
        value = getattr(task, attr, None)
        if isinstance(value, str):
            columns.append(value)
        elif isinstance(value, (tuple, list)):
            columns.extend(v for v in value if isinstance(v, str))
    if task.metadata.type == "STS":
        columns.append("score")
    return list(dict.fromkeys(columns))


def local_splits(task: Any) -> list[str]:
    """The splits a task needs on disk: its evaluation splits, plus the training split of
    classification-style tasks."""
    splits = list(task.metadata.eval_splits)
    train_split = getattr(task, "train_split", None)
    if isinstance(train_split, str) and train_split not in splits:
        splits.append(train_split)
    return splits


def _load_local_retrieval_split(folder: Path, split: str) -> dict[str, Any]:
    from datasets import Dataset

    corpus_path = find_file(folder, "corpus.jsonl")
    queries_path = find_file(folder, "queries.jsonl")
    qrels_path = find_file(folder / "qrels", f"{split}.tsv")
    if corpus_path is None or queries_path is None or qrels_path is None:
        raise MtebGlueError(
            f"data folder {str(folder)!r}: a retrieval task needs the BEIR layout: corpus.jsonl, "
            f"queries.jsonl and qrels/{split}.tsv (optionally .gz)"
        )
    corpus: dict[str, list[str]] = {"id": [], "title": [], "text": []}
    for doc_id, title, text, _ in read_beir_jsonl(corpus_path):
        corpus["id"].append(doc_id)
        corpus["title"].append(title)
        corpus["text"].append(text)
    qrels = read_qrels_tsv(qrels_path)
    queries: dict[str, list[str]] = {"id": [], "text": []}
    for query_id, _, text, _ in read_beir_jsonl(queries_path):
        if query_id in qrels:  # mteb keeps only judged queries
            queries["id"].append(query_id)
            queries["text"].append(text)
    return {
        "corpus": Dataset.from_dict(corpus),
        "queries": Dataset.from_dict(queries),
        "relevant_docs": qrels,
        "top_ranked": None,
    }


def _load_local_split_file(folder: Path, split: str, task: Any) -> Any:
    from datasets import Dataset

    path = find_file(folder, f"{split}.jsonl")
    if path is None:
        raise MtebGlueError(
            f"data folder {str(folder)!r}: task {task.metadata.name} ({task.metadata.type}) needs "
            f"{split}.jsonl (or {split}.jsonl.gz) with columns {required_columns(task)}"
        )
    records = list(read_jsonl(path))
    if not records:
        raise DataError(f"{path}: no records")
    return Dataset.from_list(records)


def _check_columns(task: Any, folder: Path) -> None:
    needed = required_columns(task)
    for subset, splits in _subset_items(task):
        for split, dataset in splits.items():
            columns = set(getattr(dataset, "column_names", []) or [])
            missing = [c for c in needed if c not in columns]
            if missing:
                where = folder / (subset if task.metadata.is_multilingual else "") / split
                raise MtebGlueError(
                    f"data folder {str(where)!r}.jsonl: task {task.metadata.name} needs column(s) "
                    f"{missing}; found {sorted(columns)}"
                )


def _subset_items(task: Any) -> list[tuple[str, dict[str, Any]]]:
    if task.metadata.is_multilingual:
        return list(task.dataset.items())
    return [("default", dict(task.dataset))]


def use_local_data(task: Any, folder: str | Path, param: str = "data_dir") -> Any:
    """Make a registered task read its data from a local folder instead of the hub.

    The task keeps mteb's official metadata (type, splits, main score, evaluator); only
    ``load_data`` changes. Layouts:

    * retrieval: a BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``);
    * every other type: one JSONL file per split (``test.jsonl``; ``train.jsonl`` too where
      the task trains, e.g. classification) with the columns of the task's hub dataset
      (``sentence1, sentence2, score`` for STS; ``text, label`` for classification; ...).
      Unknown columns are ignored; missing ones are a clear error.
    * multilingual tasks: one such folder per subset, ``<folder>/<subset>/``.

    The folder must be the task's own data: either it is named for the task
    (``<...>/STSBenchmark`` for STSBenchmark), or its content is what the task expects:
    every split file, the task's columns, and exactly the number of samples per split
    that mteb records for the task (``task.metadata.descriptive_stats``; see
    :func:`local_data_mismatch`). Results computed from it carry
    ``dataset_revision = "local:sha256:<hash of its files>"`` (:func:`data_fingerprint`).

    Args:
        task: an mteb task object (from :func:`select_tasks`).
        folder: the task's data.
        param: the caller's name of the folder parameter, used in error messages.

    Raises:
        MtebGlueError: when the folder does not exist, or is not named for the task and
            its content differs from the task's (checked now); at load time, when files or
            columns are missing.
    """
    folder = Path(folder)
    name = task.metadata.name
    if not folder.is_dir():
        raise MtebGlueError(
            f"{param}: data folder {_shown(folder)!r} for task {name} does not exist"
        )
    if folder.name != name:
        differences = local_data_mismatch(task, folder)
        if differences:
            named = (
                f"its folder is named for another task ({folder.name})"
                if _is_task_name(folder.name)
                else f"its folder is named {folder.name!r}, not {name!r}"
            )
            raise MtebGlueError(
                f"{param}: data folder {_shown(folder)!r} was given for task {name}: {named}, "
                f"and {'; '.join(differences)}. Give {param} the folder of {name}'s data (a "
                f"folder named {name!r} is taken as that)"
            )
    is_retrieval = _is_retrieval_task(task)

    def load_data(num_proc: int | None = None, **_: Any) -> None:
        if task.data_loaded:
            return
        subsets = task.hf_subsets if task.metadata.is_multilingual else ["default"]
        data: dict[str, Any] = {}
        for subset in subsets:
            sub_folder = folder / subset if task.metadata.is_multilingual else folder
            if is_retrieval:
                data[subset] = {
                    s: _load_local_retrieval_split(sub_folder, s) for s in task.metadata.eval_splits
                }
            else:
                from datasets import DatasetDict

                data[subset] = DatasetDict(
                    {s: _load_local_split_file(sub_folder, s, task) for s in local_splits(task)}
                )
        task.dataset = data if (task.metadata.is_multilingual or is_retrieval) else data["default"]
        task.dataset_transform(num_proc=num_proc)
        if not is_retrieval:
            _check_columns(task, folder)
        task.data_loaded = True

    task.load_data = load_data
    task.local_data_folder = folder
    return task


def _shown(path: Path) -> str:
    """A path for messages: relative to the project root when inside it."""
    from helpers.notebook import display_path

    return display_path(path)


def _registered_task(name: str) -> Any | None:
    """A new instance of the task registered under exactly this name, or None."""
    import mteb

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            task = mteb.get_task(name)
    except Exception:  # noqa: BLE001 - not a registered task
        return None
    return task if task.metadata.name == name else None


def _is_task_name(name: str) -> bool:
    return _registered_task(name) is not None


def expected_sizes(task: Any) -> dict[str, dict[str, int]] | None:
    """The sizes mteb records for a task's dataset, per split and subset.

    Read from ``task.metadata.descriptive_stats`` (the statistics JSON shipped inside
    mteb, ``mteb/descriptive_stats/<type>/<Task>.json``): ``num_samples`` per split (for
    retrieval also ``num_documents`` and ``num_queries``), per subset where the statistics
    have ``hf_subset_descriptive_stats``. E.g. STSBenchmark ``{"test": {"num_samples":
    1379}}``, Banking77Classification test 3,080 and train 10,003, SciFact test 5,183
    documents and 300 queries.

    Returns:
        ``{"<split>" or "<split>/<subset>": {"num_samples": n, ...}}``, or None when mteb
        has no statistics for the task.
    """
    stats = task.metadata.descriptive_stats
    if not stats:
        return None
    keys = ("num_samples", "num_documents", "num_queries")
    sizes: dict[str, dict[str, int]] = {}
    for split, split_stats in stats.items():
        if not isinstance(split_stats, dict):
            continue
        sizes[split] = {k: int(split_stats[k]) for k in keys if split_stats.get(k) is not None}
        for subset, sub in (split_stats.get("hf_subset_descriptive_stats") or {}).items():
            sizes[f"{split}/{subset}"] = {k: int(sub[k]) for k in keys if sub.get(k) is not None}
    return sizes


def _count_lines(path: Path) -> int:
    import gzip

    opener: Any = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return sum(1 for line in handle if line.strip())


def _first_record_keys(path: Path) -> set[str]:
    for record in read_jsonl(path):
        return set(record)
    return set()


def local_data_mismatch(task: Any, folder: str | Path) -> list[str]:
    """How a folder's content differs from what a task expects; empty when it fits.

    Checked, for each evaluation split (and the training split of classification-style
    tasks), per subset for multilingual tasks (``<folder>/<subset>/``):

    * the split's files are there;
    * the first record of each JSONL file has the columns of :func:`required_columns`
      (as stored, before the task's own ``dataset_transform``);
    * its size is the one mteb records (:func:`expected_sizes`): rows per split file;
      for retrieval the documents of ``corpus.jsonl`` and the judged queries of
      ``qrels/<split>.tsv``.

    Returns:
        One phrase per difference, e.g. ``"test has 1,379 rows where STS12 has 3,108"``;
        ``["mteb records no sizes for <task> to check them against"]`` when the task has
        no statistics.
    """
    folder = Path(folder)
    name = task.metadata.name
    sizes = expected_sizes(task)
    problems: list[str] = []
    if sizes is None:
        problems.append(f"mteb records no sizes for {name} to check them against")
    subsets = task.hf_subsets if task.metadata.is_multilingual else [""]
    retrieval = _is_retrieval_task(task)
    splits = list(task.metadata.eval_splits) if retrieval else local_splits(task)
    for subset in subsets:
        base = folder / subset if subset else folder
        for split in splits:
            where = f"{subset}/{split}" if subset else split
            want = (sizes or {}).get(f"{split}/{subset}" if subset else split, {})
            if retrieval:
                problems += _retrieval_mismatch(task, base, split, where, want)
                continue
            path = find_file(base, f"{split}.jsonl")
            if path is None:
                problems.append(f"{where}.jsonl is missing")
                continue
            missing = [c for c in required_columns(task) if c not in _first_record_keys(path)]
            if missing:
                problems.append(f"{where}.jsonl has no column(s) {missing}")
            rows = _count_lines(path)
            if "num_samples" in want and rows != want["num_samples"]:
                problems.append(
                    f"{where} has {rows:,} rows where {name} has {want['num_samples']:,}"
                )
    return problems


def _retrieval_mismatch(
    task: Any, base: Path, split: str, where: str, want: dict[str, int]
) -> list[str]:
    name = task.metadata.name
    corpus = find_file(base, "corpus.jsonl")
    queries = find_file(base, "queries.jsonl")
    qrels = find_file(base / "qrels", f"{split}.tsv")
    absent = [
        n
        for n, p in (
            ("corpus.jsonl", corpus),
            ("queries.jsonl", queries),
            (f"qrels/{split}.tsv", qrels),
        )
        if p is None
    ]
    if corpus is None or qrels is None or absent:
        return [f"{', '.join(absent)} missing for {where}"]
    documents = _count_lines(corpus)
    judged = len(read_qrels_tsv(qrels))
    if "num_documents" in want and "num_queries" in want:
        if (documents, judged) != (want["num_documents"], want["num_queries"]):
            return [
                f"{where} has {documents:,} documents and {judged:,} judged queries where "
                f"{name} has {want['num_documents']:,} and {want['num_queries']:,}"
            ]
    elif "num_samples" in want and documents + judged != want["num_samples"]:
        return [
            f"{where} has {documents + judged:,} documents and judged queries where {name} "
            f"has {want['num_samples']:,}"
        ]
    return []


def _is_retrieval_task(task: Any) -> bool:
    from mteb.abstasks.retrieval import AbsTaskRetrieval

    return isinstance(task, AbsTaskRetrieval)


def attach_local_data(
    tasks: Sequence[Any], data_root: str | Path | None, param: str = "data_root"
) -> dict[str, str]:
    """Point every task that has a folder ``<data_root>/<TaskName>`` at it.

    Args:
        tasks: mteb tasks.
        data_root: a folder with one sub-folder per task, named exactly as the task;
            None or ``""``: every task reads the hub.
        param: the caller's name of ``data_root``, used in error messages.

    Returns:
        task name -> ``"local"``, ``"local: <what is missing>"`` or ``"hub"``, the source
        each task will read.

    Raises:
        MtebGlueError: when ``data_root`` is given but is not a folder.
    """
    if data_root and not Path(data_root).is_dir():
        raise MtebGlueError(
            f"{param}: {str(data_root)!r} is not a folder; expected one sub-folder per task, "
            "named exactly as the task (e.g. data/mteb/STSBenchmark)"
        )
    sources: dict[str, str] = {}
    for task in tasks:
        name = task.metadata.name
        folder = Path(data_root) / name if data_root else None
        if folder is not None and folder.is_dir():
            use_local_data(task, folder, param=param)
            problem = local_data_problem(task, folder)
            task.local_data_problem = problem
            sources[name] = f"local: {problem}" if problem else "local"
        else:
            sources[name] = "hub"
    return sources


def local_data_problem(task: Any, folder: Path) -> str | None:
    """A quick check, before anything runs, that a task's local folder has its files.

    Returns:
        What is missing, or None. (Columns are checked when the data loads, after the
        task's own transform.)
    """
    subsets = task.hf_subsets if task.metadata.is_multilingual else [""]
    missing = []
    for subset in subsets:
        base = folder / subset if subset else folder
        if _is_retrieval_task(task):
            needed = ["corpus.jsonl", "queries.jsonl"] + [
                f"qrels/{s}.tsv" for s in task.metadata.eval_splits
            ]
        else:
            needed = [f"{s}.jsonl" for s in local_splits(task)]
        for name in needed:
            if find_file(base / Path(name).parent, Path(name).name) is None:
                missing.append(str(Path(subset) / name) if subset else name)
    if missing:
        return f"missing {', '.join(missing)} (or .gz) in {folder}"
    return None


# ---------------------------------------------------------------------------
# Running, resuming, isolating failures
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskOutcome:
    """What happened to one task in :func:`run_tasks`.

    Attributes:
        task: the task name.
        status: ``"done"`` (ran now), ``"skipped"`` (finished earlier, from the same
            data) or ``"failed"``.
        path: the result JSON (None when failed).
        error: ``"ExceptionType: message"`` when failed.
        seconds: wall time of this attempt.
        traceback: the full traceback when failed (also logged at WARNING).
    """

    task: str
    status: str
    path: Path | None
    error: str = ""
    seconds: float = 0.0
    traceback: str = ""


def result_folder(output_dir: str | Path, meta: Any) -> Path:
    """``<output_dir>/<org>__<model>/<revision>``."""
    return Path(output_dir) / meta.model_name_as_path() / str(meta.revision)


def result_path(output_dir: str | Path, meta: Any, task_name: str) -> Path:
    """``<output_dir>/<org>__<model>/<revision>/<Task>.json``."""
    return result_folder(output_dir, meta) / f"{task_name}.json"


LOCAL_PREFIX = "local:sha256:"
"""Start of the ``dataset_revision`` of a result computed from local files."""

LEGACY_SOURCE_SUFFIX = ".source"
"""Side file of earlier versions (``<Task>.source``); a result with one is run again."""

_FINGERPRINTS: dict[tuple[str, tuple[tuple[str, int, int], ...]], str] = {}


def data_fingerprint(task: Any) -> str:
    """What a task's result is computed from, as stored in the result's ``dataset_revision``.

    * local data (:func:`use_local_data`): ``"local:sha256:<hex>"``, a SHA-256 over every
      file of the folder (relative paths and bytes, :func:`helpers.io.files_sha256`), so
      that such a result is never taken for one on the official dataset;
    * hub data: the task's official dataset revision (``task.metadata.revision``), which
      mteb itself writes there (the hub path is fixed by the task).

    :func:`run_tasks` writes it into the result JSON (one atomic write), and
    :func:`is_finished` and :func:`summarize` compare it with the data of now. Hashes
    are memoised per folder while no file's size or modification time changes.
    """
    folder = getattr(task, "local_data_folder", None)
    if folder is None:
        return str(task.metadata.revision)
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    stats = []
    for path in files:
        info = path.stat()
        stats.append((str(path.relative_to(folder)), info.st_size, info.st_mtime_ns))
    key = (str(folder.resolve()), tuple(stats))
    if key not in _FINGERPRINTS:
        _FINGERPRINTS[key] = LOCAL_PREFIX + files_sha256(folder, files)
    return _FINGERPRINTS[key]


def _stale_reason(result: Any, task: Any) -> str | None:
    """Why ``result`` was not computed from ``task``'s data of now, or None."""
    expected = data_fingerprint(task)
    got = getattr(result, "dataset_revision", None)
    if got == expected:
        return None
    if not got:
        return f"it records no dataset_revision; the data now is {expected!r}"
    return (
        f"it was computed from other data (dataset_revision {got!r}; the data now is {expected!r})"
    )


def is_finished(path: Path, task: Any) -> bool:
    """True only when ``path`` holds a result that needs no re-run.

    That is: the file is a readable ``TaskResult``; no ``<Task>.source`` of an earlier
    version lies beside it (those wrote the hub revision even for local data, so their
    ``dataset_revision`` proves nothing); its ``dataset_revision`` equals
    :func:`data_fingerprint` of the task now (same local files, or the official hub
    revision); it has every evaluation split. In every other case the task runs again,
    with a logged warning saying why (except when there is no file at all).
    """
    from mteb.results import TaskResult

    if not path.is_file():
        return False
    if path.with_suffix(LEGACY_SOURCE_SUFFIX).is_file():
        logger.warning(
            "result file %s comes from an earlier version that did not record its data in "
            "the result; the task runs again",
            path,
        )
        return False
    try:
        result = TaskResult.from_disk(path)
    except Exception:  # noqa: BLE001 - unreadable or truncated: run the task again
        logger.warning("result file %s is unreadable; the task runs again", path)
        return False
    reason = _stale_reason(result, task)
    if reason is not None:
        logger.warning("result file %s: %s; the task runs again", path, reason)
        return False
    missing = [s for s in task.metadata.eval_splits if s not in result.scores]
    if missing:
        logger.warning("result file %s lacks split(s) %s; the task runs again", path, missing)
        return False
    return True


def save_task_result(task_result: Any, path: Path) -> Path:
    """Write a ``TaskResult`` with mteb's own serialiser, atomically."""
    return atomic_write(path, lambda tmp: task_result.to_disk(Path(tmp)))


def _no_local_data_hint(name: str, data_param: str) -> str:
    if data_param == "data_root":
        return f"put its data in a folder named {name!r} under {data_param}"
    return f"give {data_param} a folder with {name}'s data"


def run_tasks(
    model: Any,
    tasks: Sequence[Any],
    output_dir: str | Path,
    batch_size: int = 32,
    show_progress: bool = False,
    overwrite: bool = False,
    data_param: str = "data_root",
) -> list[TaskOutcome]:
    """Run tasks one by one; skip finished ones; keep going when one fails.

    Each result is saved as ``<output_dir>/<org>__<model>/<revision>/<Task>.json`` in one
    atomic write, with :func:`data_fingerprint` as its ``dataset_revision``. Temporary
    files of killed runs are removed (:func:`helpers.io.remove_stale_temporaries`: only
    those whose writer is gone, never another live run's).

    Args:
        model: an mteb encoder from :func:`load_mteb_model`.
        tasks: mteb tasks (with :func:`use_local_data` applied where data is local).
        output_dir: root of the results layout.
        batch_size: encoding batch size.
        show_progress: progress bars.
        overwrite: run tasks again even when a finished result exists.
        data_param: the caller's name of its local-data parameter, for the message of a
            task without local data when the hub is unreachable: ``"data_root"`` (a folder
            of task folders, the default) or the name of one task's folder (``"data_dir"``).

    Returns:
        One outcome per task, in order. A failure is logged at WARNING with its traceback.
    """
    import mteb

    meta = model.mteb_model_meta
    folder = result_folder(output_dir, meta)
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(folder)
    write_json(folder / "model_meta.json", json.loads(json.dumps(meta.to_dict(), default=str)))
    outcomes = []
    for task in tasks:
        name = task.metadata.name
        path = result_path(output_dir, meta, name)
        start = time.monotonic()
        if not overwrite and is_finished(path, task):
            outcomes.append(TaskOutcome(name, "skipped", path))
            continue
        try:
            if getattr(task, "local_data_problem", None):
                raise MtebGlueError(f"data folder for {name}: {task.local_data_problem}")
            if getattr(task, "local_data_folder", None) is None:
                reason = hub_offline_reason()
                if reason is not None:
                    raise MtebGlueError(
                        f"no local data for {name} and the Hugging Face hub is not reachable "
                        f"({reason}); {_no_local_data_hint(name, data_param)}"
                    )
            fingerprint = data_fingerprint(task)
            result = mteb.evaluate(
                model,
                task,
                cache=None,
                encode_kwargs={"batch_size": batch_size, "show_progress_bar": show_progress},
                show_progress_bar=show_progress,
                raise_error=True,
            )
            task_result = result.task_results[0]
            task_result.dataset_revision = fingerprint
            save_task_result(task_result, path)
            path.with_suffix(LEGACY_SOURCE_SUFFIX).unlink(missing_ok=True)
            outcomes.append(TaskOutcome(name, "done", path, seconds=time.monotonic() - start))
        except Exception as err:  # noqa: BLE001 - one task's failure must not stop the others
            trace = traceback.format_exc()
            error = f"{type(err).__name__}: {err}"
            # our own checks: their message says it all; anything else, with its traceback
            if isinstance(err, (MtebGlueError, DataError)):
                logger.warning("task %s failed: %s", name, error)
            else:
                logger.warning("task %s failed: %s\n%s", name, error, trace)
            outcomes.append(
                TaskOutcome(name, "failed", None, error, time.monotonic() - start, trace)
            )
        finally:
            if getattr(task, "data_loaded", False) and hasattr(task, "unload_data"):
                task.unload_data()
    return outcomes


# ---------------------------------------------------------------------------
# Reading results back
# ---------------------------------------------------------------------------


def load_task_results(folder: str | Path) -> list[Any]:
    """Every ``<Task>.json`` in a model/revision folder, read with ``TaskResult.from_disk``."""
    from mteb.results import TaskResult

    return [
        TaskResult.from_disk(p)
        for p in sorted(Path(folder).glob("*.json"))
        if p.name != "model_meta.json"
    ]


def main_scores(task_result: Any, task: Any | None = None) -> dict[str, float]:
    """Main score per evaluation split, averaged over the task's subsets (languages)."""
    splits = list(task.metadata.eval_splits) if task is not None else list(task_result.scores)
    languages = None
    if task is not None and task.metadata.is_multilingual:
        languages = sorted({lang.split("-")[0] for lang in task.metadata.languages})
    return {
        split: float(task_result.get_score(splits=[split], languages=languages))
        for split in splits
        if split in task_result.scores
    }


def scores_at_cutoffs(
    task_result: Any,
    split: str,
    prefixes: Sequence[str] = ("ndcg_at_", "recall_at_", "map_at_", "mrr_at_", "precision_at_"),
) -> dict[str, dict[int, float]]:
    """Retrieval metrics of one split (first subset) as ``{metric: {k: value}}``."""
    scores = task_result.scores[split][0]
    table: dict[str, dict[int, float]] = {}
    for key, value in scores.items():
        for prefix in prefixes:
            if key.startswith(prefix) and key[len(prefix) :].isdigit():
                table.setdefault(prefix[:-4], {})[int(key[len(prefix) :])] = float(value)
    return {m: dict(sorted(v.items())) for m, v in table.items()}


def summarize(
    results: Sequence[Any],
    tasks: Sequence[Any],
    outcomes: Sequence[TaskOutcome] | None = None,
) -> dict[str, Any]:
    """Leaderboard-style summary: per task, per type, and the averages.

    Follows the MTEB leaderboard: each task contributes its main score on its evaluation
    split (the mean over splits when it has several, over subsets/languages when
    multilingual); CQADupstack counts as one task (mteb's aggregate task averages its 12
    forums first); ``mean_task`` is the mean over tasks, ``mean_task_type`` the mean of
    the per-type means.

    Only results that stand for the task's data now count: a task that failed in this
    run (``outcomes`` from :func:`run_tasks`) does not count even when an older result
    file exists, and neither does a result whose ``dataset_revision`` is not
    :func:`data_fingerprint` of the task now (computed from other local files, from the
    hub while the task now reads local files, or the reverse).

    Args:
        results: ``TaskResult`` objects (e.g. :func:`load_task_results`).
        tasks: the selected tasks, with their local data attached as in the run.
        outcomes: this run's outcomes; None: no run (nothing counts as failed).

    Returns:
        ``{"tasks": [selected task names], "per_task": {task: {"type", "metric", "split",
        "main_score"}}, "per_type": {type: mean}, "mean_task", "mean_task_type" (NaN
        without tasks), "missing": [every selected task without a counted score],
        "failed": [tasks failed in this run], "stale": [tasks whose result comes from other
        data], "reasons": {task: why it is missing}}``.
    """
    by_name = {r.task_name: r for r in results}
    failed_now = {o.task: o.error for o in outcomes or () if o.status == "failed"}
    per_task: dict[str, dict[str, Any]] = {}
    failed: list[str] = []
    stale: list[str] = []
    reasons: dict[str, str] = {}
    for task in tasks:
        name = task.metadata.name
        if name in failed_now:
            failed.append(name)
            reasons[name] = f"failed in this run ({failed_now[name]})"
            continue
        if name not in by_name:
            reasons[name] = "no result"
            continue
        stale_reason = _stale_reason(by_name[name], task)
        if stale_reason is not None:
            stale.append(name)
            reasons[name] = f"result not counted: {stale_reason}"
            continue
        splits = main_scores(by_name[name], task)
        if not splits:
            reasons[name] = f"no score on its evaluation split(s) {task.metadata.eval_splits}"
            continue
        per_task[name] = {
            "type": task.metadata.type,
            "metric": task.metadata.main_score,
            "split": ",".join(splits),
            "main_score": sum(splits.values()) / len(splits),
        }
    per_type: dict[str, list[float]] = {}
    for row in per_task.values():
        per_type.setdefault(row["type"], []).append(row["main_score"])
    type_means = {t: sum(v) / len(v) for t, v in sorted(per_type.items())}
    return {
        "tasks": [t.metadata.name for t in tasks],
        "per_task": per_task,
        "per_type": type_means,
        "mean_task": sum(r["main_score"] for r in per_task.values()) / len(per_task)
        if per_task
        else float("nan"),
        "mean_task_type": sum(type_means.values()) / len(type_means)
        if type_means
        else float("nan"),
        "missing": [t.metadata.name for t in tasks if t.metadata.name not in per_task],
        "failed": failed,
        "stale": stale,
        "reasons": reasons,
    }


def summary_text(summary: dict[str, Any]) -> str:
    """One line of counts, then one line per task without a counted score and why.

    E.g. ``"2 of 2 tasks have results; missing: none"`` or ``"1 of 2 tasks have results;
    missing: ['Banking77Classification']\n - Banking77Classification: failed in this run
    (...)"``.
    """
    names = summary.get("tasks", [*summary["per_task"], *summary["missing"]])
    missing = summary["missing"]
    lines = [
        f"{len(summary['per_task'])} of {len(names)} tasks have results; "
        f"missing: {missing or 'none'}"
    ]
    reasons = summary.get("reasons", {})
    lines += [f" - {name}: {reasons.get(name, 'no result')}" for name in missing]
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Tables for the notebooks (fixed columns, also when empty)
# ---------------------------------------------------------------------------

PER_TASK_COLUMNS = ("type", "metric", "split", "main_score")
COMPARISON_COLUMNS = ("split", "metric", "ours", "published", "difference", "reproduced")
OUTCOME_COLUMNS = ("status", "seconds", "error")


def _round4(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Round to 4 decimals without ``-0.0``."""
    for column in columns:
        frame[column] = frame[column].astype(float).round(4) + 0.0
    return frame


def per_task_frame(summary: dict[str, Any]) -> pd.DataFrame:
    """:func:`summarize`'s per-task rows as a DataFrame.

    Returns:
        index ``task``; columns ``type``, ``metric``, ``split``, ``main_score`` (float,
        4 decimals), in task order; the same columns when no task has a result.
    """
    import pandas as pd

    rows = [{"task": name, **row} for name, row in summary["per_task"].items()]
    frame = pd.DataFrame(rows, columns=["task", *PER_TASK_COLUMNS]).set_index("task")
    return _round4(frame, ["main_score"])


def averages_frame(summary: dict[str, Any]) -> pd.DataFrame:
    """The leaderboard averages as a DataFrame.

    Returns:
        index: ``"<type> (mean of <n>)"`` per task type, then ``"Mean (Task)"`` and
        ``"Mean (TaskType)"`` (NaN when no task has a result); one column ``score``
        (float, 4 decimals).
    """
    import pandas as pd

    counts: dict[str, int] = {}
    for row in summary["per_task"].values():
        counts[row["type"]] = counts.get(row["type"], 0) + 1
    averages = {f"{t} (mean of {counts.get(t, 0)})": v for t, v in summary["per_type"].items()}
    averages["Mean (Task)"] = summary["mean_task"]
    averages["Mean (TaskType)"] = summary["mean_task_type"]
    frame = pd.Series(averages, name="score", dtype=float).to_frame()
    return _round4(frame, ["score"])


def outcomes_frame(outcomes: Sequence[TaskOutcome]) -> pd.DataFrame:
    """:func:`run_tasks`' outcomes as a DataFrame.

    Returns:
        index ``task``; columns ``status``, ``seconds`` (float), ``error`` (``""`` unless
        failed); the same columns when there are no outcomes.
    """
    import pandas as pd

    rows = [
        {"task": o.task, "status": o.status, "seconds": float(o.seconds), "error": o.error}
        for o in outcomes
    ]
    return pd.DataFrame(rows, columns=["task", *OUTCOME_COLUMNS]).set_index("task")


def comparison_frame(
    summary: dict[str, Any],
    model: str,
    published: dict[tuple[str, str, str], float],
    references: Sequence[str] = (),
    tolerance: float = 0.002,
) -> pd.DataFrame:
    """Our main scores next to the published ones, as a DataFrame.

    Args:
        summary: from :func:`summarize`.
        model: the model's official name (``org/name``).
        published: from :func:`published_scores`.
        references: other models whose published scores get a column each, named by the
            part after ``/`` (``"BAAI/bge-small-en-v1.5"`` -> ``bge-small-en-v1.5``).
        tolerance: the largest absolute difference that counts as reproduced.

    Returns:
        index ``task``; columns ``split``, ``metric``, ``ours``, ``published``,
        ``difference``, ``reproduced`` (True/False/None), then one per reference; numbers
        rounded to 4 decimals with no ``-0.0`` (NaN where unknown). Only tasks with a
        counted score (failed and stale tasks have no row); the same columns when empty.
    """
    import pandas as pd

    names = [r.split("/")[-1] for r in references]
    rows = []
    for row in compare_with_published(summary, model, published, tolerance):
        for reference, column in zip(references, names, strict=True):
            row[column] = published.get((reference, row["task"], row["split"]))
        rows.append(row)
    columns = ["task", *COMPARISON_COLUMNS, *names]
    frame = pd.DataFrame(rows, columns=columns).set_index("task")
    frame["reproduced"] = frame["reproduced"].astype(object)
    return _round4(frame, ["ours", "published", "difference", *names])


def reproduction_summary(
    comparison: pd.DataFrame, summary: dict[str, Any], tolerance: float = 0.002
) -> str:
    """What :func:`comparison_frame` shows, in words, never claiming more than it shows.

    ``"Every task with a published score reproduces it within 0.002."`` only when every
    task with a published score reproduces it and no selected task failed or has a
    result from other data; otherwise it names those tasks, and when a score does not
    reproduce lists :data:`REPRODUCTION_CAUSES`.
    """
    lines = []
    reproduced = comparison["reproduced"]
    if reproduced.eq(False).any():
        lines.append("Some scores do not reproduce. Known causes to check:")
        lines += [f" - {cause}" for cause in REPRODUCTION_CAUSES]
    elif reproduced.eq(True).any():
        lines.append(f"Every task with a published score reproduces it within {tolerance}.")
    else:
        lines.append("No task with a score here has a published score to compare with.")
    failed, stale = summary.get("failed", []), summary.get("stale", [])
    if failed or stale:
        lines.append(
            f"Not checked, {len(failed) + len(stale)} task(s) without a valid score now "
            "(why: the summary above): "
            + "; ".join(
                part
                for part in (
                    f"failed in this run: {', '.join(failed)}" if failed else "",
                    f"results from other data: {', '.join(stale)}" if stale else "",
                )
                if part
            )
        )
    return "\n".join(lines)


def failure_report(
    outcomes: Sequence[TaskOutcome],
    tasks: Sequence[Any],
    data_root: str | Path | None,
    param: str = "data_root",
) -> str:
    """Each failed task with its cause, then what to do.

    When the Hugging Face hub is unreachable (:func:`helpers.hub.hub_offline_reason`) it
    says which selected tasks can run from ``data_root`` (those with a folder named for
    them there) and which need the network, and which task folders ``data_root`` holds.

    Args:
        outcomes: from :func:`run_tasks`.
        tasks: the selected tasks.
        data_root: the folder of task folders (None or ``""``: none).
        param: the caller's name of ``data_root``.

    Returns:
        ``"No task failed."``, or several lines of text.
    """
    failed = [o for o in outcomes if o.status == "failed"]
    if not failed:
        return "No task failed."
    lines = [f"{len(failed)} of {len(outcomes)} task(s) failed:"]
    lines += [f" - {o.task}: {o.error}" for o in failed]
    lines.append("(the full tracebacks are in the outcomes' traceback field and the log)")
    root = Path(data_root) if data_root else None
    names = [t.metadata.name for t in tasks]
    local = [n for n in names if root is not None and (root / n).is_dir()]
    reason = hub_offline_reason()
    if reason is not None:
        remote = [n for n in names if n not in local]
        shown = _shown(root) if root is not None else "(none)"
        lines.append(f"The Hugging Face hub is not reachable ({reason}).")
        lines.append(
            f"Of the {len(names)} selected task(s), {len(local)} can run from {param} "
            f"{shown}: {', '.join(local) or 'none'}."
        )
        lines.append(
            f"{len(remote)} need the network (or a folder named for the task under "
            f"{param}): {', '.join(remote) or 'none'}."
        )
        if root is not None and root.is_dir():
            available = sorted(p.name for p in root.iterdir() if p.is_dir())
            lines.append(
                f"{param} has data for: {', '.join(available) or 'no task'} "
                f"(select them with tasks=[...])."
            )
    else:
        lines.append(
            "Fix the cause named above (a data folder's files or columns, the model, "
            "memory) and run again: finished tasks are skipped."
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Published scores and model cards
# ---------------------------------------------------------------------------


def published_scores(path: str | Path = PUBLISHED_SCORES_FILE) -> dict[tuple[str, str, str], float]:
    """Published main scores: ``(model, task, split) -> score``.

    From the snapshot of embeddings-benchmark/results shipped in
    ``data/reference-scores/`` (model names with ``/``, as mteb writes them).
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return {
        (row["model"].replace("__", "/"), row["task"], row["split"]): float(row["main_score"])
        for row in data["rows"]
    }


@contextmanager
def result_cache(output_dir: str | Path) -> Iterator[Any]:
    """An mteb ``ResultCache`` that reads ``output_dir`` (it expects ``<path>/results/``).

    A context manager: when ``output_dir`` is not itself called ``results``, a temporary
    folder with a ``results`` link to it is used, and removed on exit::

        with result_cache("results/mteb") as cache:
            cache.load_results(...)
    """
    from mteb.cache import ResultCache

    output_dir = Path(output_dir).resolve()
    if output_dir.name == "results":
        yield ResultCache(output_dir.parent)
        return
    bridge = Path(tempfile.mkdtemp(prefix="mteb-cache-"))
    try:
        os.symlink(output_dir, bridge / "results")
        yield ResultCache(bridge)
    finally:
        shutil.rmtree(bridge, ignore_errors=True)  # removes the link, never its target


def _metric_entries(task_result: Any, task: Any, all_metrics: bool) -> list[dict[str, Any]]:
    """``model-index`` results of one task, as mteb 1.x's ``create_meta`` wrote them."""
    meta = task.metadata
    entries = []
    for split, subsets in task_result.scores.items():
        for scores in subsets:
            subset = scores.get("hf_subset", "default")
            if all_metrics:
                metrics = [
                    {"type": key, "value": round(float(value) * 100, 4)}
                    for key, value in scores.items()
                    if isinstance(value, (int, float))
                    and not isinstance(value, bool)
                    and math.isfinite(value)  # NaN (e.g. ap of a multi-class task): no metric
                ]
            else:
                metrics = [
                    {"type": meta.main_score, "value": round(float(scores["main_score"]) * 100, 4)}
                ]
            entries.append(
                {
                    "task": {"type": meta.type},
                    "dataset": {
                        "type": meta.dataset["path"],
                        "name": f"MTEB {meta.name} ({subset})",
                        "config": subset,
                        "split": split,
                        "revision": task_result.dataset_revision,
                    },
                    "metrics": metrics,
                }
            )
    return entries


def _entry_key(entry: dict[str, Any]) -> tuple[str, str, str]:
    """(task, subset, split) of a ``model-index`` result, from ``"MTEB <Task> (<subset>)"``
    (mteb 1.x) or ``"<Task> (<subset>)"`` (``get_hf_eval_results``)."""
    dataset = (entry.get("dataset") if isinstance(entry, dict) else None) or {}
    config = str(dataset.get("config") or "default")
    name = str(dataset.get("name") or "").removeprefix("MTEB ")
    name = name.removesuffix(f" ({config})")
    return name, config, str(dataset.get("split") or "")


def _split_front_matter(text: str, where: str) -> tuple[dict[str, Any], str]:
    import yaml

    if text.startswith("---") and "\n---" in text[3:]:
        end = text.index("\n---", 3)
        front = yaml.safe_load(text[3:end]) or {}
        if not isinstance(front, dict):
            raise MtebGlueError(f"{where}: its front matter is not a YAML mapping")
        return front, text[end + 4 :].lstrip("-").removeprefix("\n")
    return {}, text


def _merged_model_index(
    index: Any, name: str, new_entries: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``model-index`` with ``new_entries`` merged into the entry named ``name`` (else the
    first): an existing result for the same task, subset and split is replaced where it
    stands, the others are kept, new ones are appended."""
    index = [m for m in index if isinstance(m, dict)] if isinstance(index, list) else []
    target = next((m for m in index if m.get("name") == name), index[0] if index else None)
    if target is None:
        target = {"name": name, "results": []}
        index.append(target)
    new_by_key = {_entry_key(e): e for e in new_entries}
    merged, used = [], set()
    for entry in target.get("results") or []:
        key = _entry_key(entry)
        if key not in new_by_key:
            merged.append(entry)
        elif key not in used:
            merged.append(new_by_key[key])
            used.add(key)
    merged += [e for k, e in new_by_key.items() if k not in used]
    target["results"] = merged
    return index


def model_card(
    model: str,
    tasks: Sequence[Any],
    output_dir: str | Path,
    card_path: str | Path,
    existing_readme: str | Path | None = None,
    all_metrics: bool = True,
) -> Path:
    """Write a model card whose ``model-index`` holds the results, as ``create_meta`` did.

    Without ``existing_readme`` the card starts from mteb's current command
    (``mteb create-model-results``, which replaced 1.x's ``mteb create_meta``; from Python
    ``generate_model_card``); with it (1.x's ``--from_existing``), from the model's own
    README: its body and its other front-matter keys stay as they are.

    The ``model-index`` gets one result per task, split and subset, in the format of mteb
    1.x's ``create_meta``: ``dataset`` (``type`` the hub path, ``name`` ``"MTEB <Task>
    (<subset>)"``, ``config``, ``split``, ``revision`` the result's ``dataset_revision``,
    so ``local:sha256:...`` for local data) and ``metrics``: with ``all_metrics`` every
    finite numeric score of the result (``main_score``, ``ndcg_at_10``, ``recall_at_100``,
    ...), else the main metric only, each as ``{"type": name, "value": score * 100}``
    (percent, 4 decimals, as ``create_meta`` wrote; ``get_hf_eval_results`` gives the
    main score alone). Entries already in the README for the same task, split and subset
    are replaced in place; the others are kept. The ``mteb`` tag is added once.
    CLI equivalent of the first step: ``mteb create-model-results --model-name <model>
    --results-folder <folder whose results/ is output_dir> --tasks ... --output-path <card>``.

    Args:
        model: the model's name (or path, as for :func:`model_meta`).
        tasks: the tasks whose results go in (results of other tasks are left out).
        output_dir: root of the results layout.
        card_path: the card to write.
        existing_readme: the model's README.md to merge into.
        all_metrics: every metric (True) or the main score only.

    Raises:
        MtebGlueError: when ``existing_readme`` is not a file or its front matter is not
            YAML.
    """
    import yaml

    meta = model_meta(model)
    card_path = Path(card_path)
    if existing_readme is not None:
        readme = Path(existing_readme)
        if not readme.is_file():
            raise MtebGlueError(
                f"existing_readme: {str(readme)!r} is not a file; expected the model's "
                "README.md (YAML front matter between '---' lines, then the text)"
            )
        text = readme.read_text(encoding="utf-8")
        where = f"existing_readme {str(readme)!r}"
    else:
        from mteb.cli.generate_model_card import generate_model_card

        with result_cache(output_dir) as cache, tempfile.TemporaryDirectory() as tmp:
            generated = Path(tmp) / "card.md"
            generate_model_card(
                meta.name, tasks=list(tasks), results_cache=cache, output_path=generated
            )
            text = generated.read_text(encoding="utf-8")
        where = "the generated card"
    try:
        front, body = _split_front_matter(text, where)
    except yaml.YAMLError as err:
        raise MtebGlueError(f"{where}: its front matter is not valid YAML ({err})") from err

    by_name = {t.metadata.name: t for t in tasks}
    new_entries = [
        entry
        for result in load_task_results(result_folder(output_dir, meta))
        if result.task_name in by_name
        for entry in _metric_entries(result, by_name[result.task_name], all_metrics)
    ]
    tags = front.get("tags") or []
    tags = [tags] if isinstance(tags, str) else list(tags)
    front["tags"] = tags if "mteb" in tags else [*tags, "mteb"]
    if new_entries or front.get("model-index"):
        front["model-index"] = _merged_model_index(front.get("model-index"), meta.name, new_entries)
    header = yaml.safe_dump(front, sort_keys=False, allow_unicode=True)
    return write_text(card_path, f"---\n{header}---\n{body}")


SUBMISSION_NOTE = (
    "The MTEB leaderboard reads the embeddings-benchmark/results repository "
    "(https://github.com/embeddings-benchmark/results): a result folder "
    "<output_dir>/<org>__<model>/<revision>/ is the folder that repository keeps as "
    "results/<org>__<model>/<revision>/."
)
"""How results reach the leaderboard, in one sentence."""


def submission_instructions(output_dir: str | Path, meta: Any) -> str:
    """The text that tells how to submit this model's results to the leaderboard.

    The leaderboard reads the embeddings-benchmark/results repository; the result folder
    ``<output_dir>/<org>__<model>/<revision>/`` (``<Task>.json`` files and
    ``model_meta.json``) is the layout that repository takes under ``results/``, so it is
    copied there as it is, and submitted as a pull request. Results computed from local
    data (``dataset_revision`` ``local:sha256:...``) are named: they are not results on the
    official datasets and must be run again from the hub first.

    Args:
        output_dir: root of the results layout.
        meta: the model's ``ModelMeta`` (``encoder.mteb_model_meta``).

    Returns:
        Several lines of text, with the folder relative to ``output_dir``.
    """
    folder = result_folder(output_dir, meta)
    relative = folder.relative_to(Path(output_dir)).as_posix()
    local = []
    if folder.is_dir():
        for path in sorted(folder.glob("*.json")):
            if path.name == "model_meta.json":
                continue
            try:
                revision = json.loads(path.read_text(encoding="utf-8")).get("dataset_revision")
            except (OSError, ValueError):
                continue
            if str(revision).startswith(LOCAL_PREFIX):
                local.append(path.stem)
    lines = [
        SUBMISSION_NOTE,
        "To submit: fork https://github.com/embeddings-benchmark/results, copy the folder "
        f"{relative}/ (from {_shown(Path(output_dir))}) to results/{relative}/ in the fork, "
        "and open a pull request.",
    ]
    if str(meta.revision) == "local" or str(meta.name).startswith("local/"):
        lines.append(
            "This model is a local folder: publish it on the hub first, so that its results "
            "carry its hub name and revision."
        )
    if local:
        lines.append(
            f"Not submittable: {', '.join(local)} (computed from local data, dataset_revision "
            f"{LOCAL_PREFIX}...); run them on the hub's data (no local folder) first."
        )
    return "\n".join(lines)


def score_table(task_result: Any, split: str) -> dict[str, Any]:
    """The numeric scores of one split (first subset), for display.

    Returns:
        ``{"main_score": float, "metrics": {name: value}}`` with every numeric entry of
        mteb's score dictionary except bookkeeping fields.
    """
    scores = task_result.scores[split][0]
    metrics = {
        key: float(value)
        for key, value in scores.items()
        if isinstance(value, (int, float))
        and not isinstance(value, bool)
        and key not in {"main_score", "evaluation_time"}
    }
    return {"main_score": float(scores["main_score"]), "metrics": metrics}


REPRODUCTION_CAUSES = (
    "query prompt or instruction (e.g. BGE's retrieval instruction, model prompts)",
    "dataset revision (the task's pinned revision vs the data you loaded)",
    "split (test vs dev; MSMARCO is scored on dev)",
    "exclusion of identical query/document ids (ArguAna and other tasks ignore them)",
    "fp16/bf16 instead of fp32 encoding",
    "maximum sequence length (truncation)",
)
"""Known causes to check when a score does not reproduce its published value."""


def compare_with_published(
    summary: dict[str, Any],
    model: str,
    published: dict[tuple[str, str, str], float],
    tolerance: float = 0.002,
) -> list[dict[str, Any]]:
    """Our main scores next to the published ones of the same model.

    Args:
        summary: from :func:`summarize`.
        model: the model's official name (``org/name``).
        published: from :func:`published_scores`.
        tolerance: the largest absolute difference that counts as reproduced.

    Returns:
        One row per task with a counted score (never one listed as ``failed`` or
        ``stale`` in the summary): task, split, metric, ours, published (None when
        unknown), difference, reproduced (True/False/None).
    """
    excluded = {*summary.get("failed", ()), *summary.get("stale", ())}
    rows = []
    for task, row in summary["per_task"].items():
        if task in excluded:
            continue
        split = row["split"]
        ref = published.get((model, task, split))
        diff = None if ref is None else row["main_score"] - ref
        rows.append(
            {
                "task": task,
                "split": split,
                "metric": row["metric"],
                "ours": row["main_score"],
                "published": ref,
                "difference": diff,
                "reproduced": None if diff is None else abs(diff) <= tolerance,
            }
        )
    return rows
