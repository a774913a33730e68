"""MTEB 2.x glue: the model's real identity, tasks from local folders, resumable runs, summaries.

What changed from the mteb 1.x calls of the FlagEmbedding tutorials:

* ``mteb.MTEB(tasks=...).run(model, output_folder=...)`` -> ``mteb.evaluate(model, tasks)``,
  which returns a ``ModelResult`` of ``TaskResult`` objects (here saved by
  :func:`run_tasks`, one JSON per task, atomically).
* ``MTEB_MAIN_EN`` -> ``mteb.get_benchmark("MTEB(eng, v1)")`` (56 tasks; CQADupstack is one
  aggregate task over its 12 forums).
* ``mteb create_meta`` -> ``mteb create-model-results`` (Python: :func:`model_card`).

Results land in ``<output_dir>/<org>__<model>/<revision>/<Task>.json`` in mteb's
``TaskResult`` format with a ``model_meta.json`` beside them: the layout of mteb's result
cache and of the embeddings-benchmark/results repository, one level up
(``ResultCache(path)`` reads ``path/results/...``; :func:`result_cache` bridges that).
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import tempfile
import time
import traceback
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from helpers.cache import EmbeddingCache, chunk_size_for, library_versions, weights_id
from helpers.data import DataError, find_file, read_beir_jsonl, read_jsonl, read_qrels_tsv
from helpers.hub import hub_offline_reason
from helpers.io import atomic_write, files_sha256, write_json, write_text
from helpers.models import DEFAULT_MODEL, pick_device, resolve_model

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
    matches = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    return f"; did you mean {', '.join(repr(m) for m in matches)}?" if matches else ""


def task_types() -> list[str]:
    """Every task type mteb knows (``Retrieval``, ``STS``, ``Classification``, ...)."""
    import mteb

    return sorted({t.metadata.type for t in mteb.get_tasks()})


def select_tasks(
    benchmark: str = "MTEB(eng, v1)",
    tasks: Sequence[str] = (),
    types: Sequence[str] = (),
) -> list[Any]:
    """Tasks by benchmark, by name, and/or by type.

    Args:
        benchmark: a benchmark name such as ``"MTEB(eng, v1)"`` (the 56 tasks of the
            original English leaderboard) or ``"MTEB(eng, v2)"``; ignored when ``tasks``
            is given.
        tasks: task names; overrides the benchmark.
        types: keep only these task types (e.g. ``["Clustering"]``).

    Returns:
        mteb task objects, in benchmark (or given) order.

    Raises:
        MtebGlueError: naming an unknown benchmark, task or type, with the closest names.
    """
    import mteb

    if types:
        known_types = task_types()
        unknown = [t for t in types if t not in known_types]
        if unknown:
            hint = _closest(unknown[0], known_types)
            raise MtebGlueError(
                f"task_types: unknown {unknown}{hint} Known types: {', '.join(known_types)}"
            )
    if tasks:
        with warnings.catch_warnings():  # instantiating beta tasks warns once per task
            warnings.simplefilter("ignore")
            registry = mteb.get_tasks(
                exclude_superseded=False, exclude_private=False, exclude_beta=False
            )
        all_names = {t.metadata.name for t in registry}
        unknown = [t for t in tasks if t not in all_names]
        if unknown:
            raise MtebGlueError(
                f"tasks: unknown task {unknown[0]!r}{_closest(unknown[0], all_names)}"
            )
        selected = [t for t in registry if t.metadata.name in set(tasks)]
        order = {name: i for i, name in enumerate(tasks)}
        selected.sort(key=lambda t: order[t.metadata.name])
    else:
        try:
            selected = list(mteb.get_benchmark(benchmark).tasks)
        except Exception as err:  # noqa: BLE001
            names = [b.name for b in mteb.get_benchmarks()]
            raise MtebGlueError(
                f"benchmark: unknown benchmark {benchmark!r}{_closest(benchmark, names)}"
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


def use_local_data(task: Any, folder: str | Path) -> Any:
    """Make a registered task read its data from a local folder instead of the hub.

    The task keeps mteb's official metadata (type, splits, main score, evaluator); only
    ``load_data`` changes. Layouts:

    * retrieval: a BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``);
    * every other type: one JSONL file per split (``test.jsonl``; ``train.jsonl`` too where
      the task trains, e.g. classification) with the columns of the task's hub dataset
      (``sentence1, sentence2, score`` for STS; ``text, label`` for classification; ...).
      Unknown columns are ignored; missing ones are a clear error.
    * multilingual tasks: one such folder per subset, ``<folder>/<subset>/``.

    Raises:
        MtebGlueError: when the folder does not exist (checked now) or, at load time, when
            files or columns are missing.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MtebGlueError(
            f"data folder {str(folder)!r} for task {task.metadata.name} does not exist"
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


def _is_retrieval_task(task: Any) -> bool:
    from mteb.abstasks.retrieval import AbsTaskRetrieval

    return isinstance(task, AbsTaskRetrieval)


def attach_local_data(tasks: Sequence[Any], data_root: str | Path | None) -> dict[str, str]:
    """Point every task that has a folder ``<data_root>/<TaskName>`` at it.

    Returns:
        task name -> ``"local"`` or ``"hub"``, the source each task will read.
    """
    if data_root and not Path(data_root).is_dir():
        raise MtebGlueError(
            f"data_root: {str(data_root)!r} is not a folder; expected one sub-folder per task, "
            "named exactly as the task (e.g. data/mteb/STSBenchmark)"
        )
    sources: dict[str, str] = {}
    for task in tasks:
        name = task.metadata.name
        folder = Path(data_root) / name if data_root else None
        if folder is not None and folder.is_dir():
            use_local_data(task, folder)
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
        status: ``"done"`` (ran now), ``"skipped"`` (finished earlier) or ``"failed"``.
        path: the result JSON (None when failed).
        error: ``"ExceptionType: message"`` when failed.
        seconds: wall time of this attempt.
    """

    task: str
    status: str
    path: Path | None
    error: str = ""
    seconds: float = 0.0


def result_folder(output_dir: str | Path, meta: Any) -> Path:
    """``<output_dir>/<org>__<model>/<revision>``."""
    return Path(output_dir) / meta.model_name_as_path() / str(meta.revision)


def result_path(output_dir: str | Path, meta: Any, task_name: str) -> Path:
    """``<output_dir>/<org>__<model>/<revision>/<Task>.json``."""
    return result_folder(output_dir, meta) / f"{task_name}.json"


SOURCE_SUFFIX = ".source"


def data_fingerprint(task: Any) -> str:
    """What a task's result was computed from: a hash of its local files, or the hub revision.

    Stored next to each result as ``<Task>.source`` (not ``.json``: mteb's result readers
    take every ``.json`` in the folder for a result), so that a result computed from other
    data (another ``data_root``, an edited file) is not taken for a finished task.
    """
    folder = getattr(task, "local_data_folder", None)
    if folder is None:
        return f"hub:{task.metadata.dataset['path']}@{task.metadata.dataset['revision']}"
    files = (p for p in Path(folder).rglob("*") if p.is_file())
    return f"local:sha256:{files_sha256(folder, files)}"


def is_finished(path: Path, task: Any) -> bool:
    """True when ``path`` holds a readable result with every evaluation split of ``task``,
    computed from the same data (see :func:`data_fingerprint`)."""
    from mteb.results import TaskResult

    if not path.is_file():
        return False
    source = path.with_suffix(SOURCE_SUFFIX)
    if source.is_file() and source.read_text(encoding="utf-8").strip() != data_fingerprint(task):
        logger.warning("result file %s was computed from other data; the task runs again", path)
        return False
    try:
        result = TaskResult.from_disk(path)
    except Exception:  # noqa: BLE001 - unreadable or truncated: run the task again
        logger.warning("result file %s is unreadable; the task runs again", path)
        return False
    return all(split in result.scores for split in task.metadata.eval_splits)


def save_task_result(task_result: Any, path: Path) -> Path:
    """Write a ``TaskResult`` with mteb's own serialiser, atomically."""
    return atomic_write(path, lambda tmp: task_result.to_disk(Path(tmp)))


def run_tasks(
    model: Any,
    tasks: Sequence[Any],
    output_dir: str | Path,
    batch_size: int = 32,
    show_progress: bool = False,
    overwrite: bool = False,
) -> list[TaskOutcome]:
    """Run tasks one by one; skip finished ones; keep going when one fails.

    Args:
        model: an mteb encoder from :func:`load_mteb_model`.
        tasks: mteb tasks (with :func:`use_local_data` applied where data is local).
        output_dir: root of the results layout.
        batch_size: encoding batch size.
        show_progress: progress bars.
        overwrite: run tasks again even when a finished result exists.

    Returns:
        One outcome per task, in order.
    """
    import mteb

    meta = model.mteb_model_meta
    folder = result_folder(output_dir, meta)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(".*.tmp"):  # left by a run killed in the middle of a write
        stale.unlink()
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
                        f"({reason}); put its data in a folder named {name!r} under data_root"
                    )
            result = mteb.evaluate(
                model,
                task,
                cache=None,
                encode_kwargs={"batch_size": batch_size, "show_progress_bar": show_progress},
                show_progress_bar=show_progress,
                raise_error=True,
            )
            save_task_result(result.task_results[0], path)
            write_text(path.with_suffix(SOURCE_SUFFIX), data_fingerprint(task) + "\n")
            outcomes.append(TaskOutcome(name, "done", path, seconds=time.monotonic() - start))
        except Exception as err:  # noqa: BLE001 - one task's failure must not stop the others
            logger.debug("task %s failed:\n%s", name, traceback.format_exc())
            outcomes.append(
                TaskOutcome(
                    name, "failed", None, f"{type(err).__name__}: {err}", time.monotonic() - start
                )
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


def summarize(results: Sequence[Any], tasks: Sequence[Any]) -> dict[str, Any]:
    """Leaderboard-style summary: per task, per type, and the averages.

    Follows the MTEB leaderboard: each task contributes its main score on its evaluation
    split (the mean over splits when it has several, over subsets/languages when
    multilingual); CQADupstack counts as one task (mteb's aggregate task averages its 12
    forums first); ``mean_task`` is the mean over tasks, ``mean_task_type`` the mean of
    the per-type means. Only tasks with results count; ``missing`` lists the others.

    Returns:
        ``{"per_task": {task: {"type", "main_score", "metric", "split"}}, "per_type":
        {type: mean}, "mean_task", "mean_task_type", "missing": [task names]}``.
    """
    by_name = {r.task_name: r for r in results}
    per_task: dict[str, dict[str, Any]] = {}
    for task in tasks:
        name = task.metadata.name
        if name not in by_name:
            continue
        splits = main_scores(by_name[name], task)
        if not splits:
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
        "per_task": per_task,
        "per_type": type_means,
        "mean_task": sum(r["main_score"] for r in per_task.values()) / len(per_task)
        if per_task
        else float("nan"),
        "mean_task_type": sum(type_means.values()) / len(type_means)
        if type_means
        else float("nan"),
        "missing": [t.metadata.name for t in tasks if t.metadata.name not in per_task],
    }


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


def result_cache(output_dir: str | Path) -> Any:
    """An mteb ``ResultCache`` that reads ``output_dir`` (it expects ``<path>/results/``).

    When ``output_dir`` is not itself called ``results``, a temporary folder with a
    ``results`` link to it is used.
    """
    from mteb.cache import ResultCache

    output_dir = Path(output_dir).resolve()
    if output_dir.name == "results":
        return ResultCache(output_dir.parent)
    bridge = Path(tempfile.mkdtemp(prefix="mteb-cache-"))
    os.symlink(output_dir, bridge / "results")
    return ResultCache(bridge)


def model_card(
    model: str, tasks: Sequence[Any], output_dir: str | Path, card_path: str | Path
) -> Path:
    """Write a model card with the ``model-index`` metadata of the results.

    First the card of mteb's current command (``mteb create-model-results``, which
    replaced 1.x's ``mteb create_meta``; from Python ``generate_model_card``), then its
    YAML header gets one ``model-index`` entry per task, split and subset from
    ``TaskResult.get_hf_eval_results()``: the metadata ``create_meta`` used to write.
    CLI equivalent of the first step: ``mteb create-model-results --model-name <model>
    --results-folder <folder whose results/ is output_dir> --tasks ... --output-path <card>``.
    """
    from huggingface_hub import ModelCard
    from mteb.cli.generate_model_card import generate_model_card

    meta = model_meta(model)
    card_path = Path(card_path)
    atomic_write(
        card_path,
        lambda tmp: generate_model_card(
            meta.name,
            tasks=list(tasks),
            results_cache=result_cache(output_dir),
            output_path=Path(tmp),
        ),
    )
    names = {t.metadata.name for t in tasks}
    results = [
        r for r in load_task_results(result_folder(output_dir, meta)) if r.task_name in names
    ]
    card = ModelCard.load(card_path)
    card.data.model_name = meta.name
    card.data.eval_results = [e for r in results for e in r.get_hf_eval_results()] or None
    atomic_write(card_path, lambda tmp: card.save(tmp))
    return card_path


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
        One row per task: task, split, ours, published (None when unknown), difference,
        reproduced (True/False/None).
    """
    rows = []
    for task, row in summary["per_task"].items():
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
