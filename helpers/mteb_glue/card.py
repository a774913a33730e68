"""Published scores, mteb's result cache over our results, model cards, and how to submit.

``mteb create_meta`` (1.x) is ``mteb create-model-results`` in mteb 2.x; :func:`model_card`
writes ``create_meta``'s ``model-index`` and merges into an existing README.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from helpers.io import write_text
from helpers.mteb_glue.errors import MtebGlueError
from helpers.mteb_glue.model import model_meta
from helpers.mteb_glue.results import load_task_results
from helpers.mteb_glue.runner import LOCAL_PREFIX, result_folder
from helpers.notebook import PROJECT_ROOT, display_path

PUBLISHED_SCORES_FILE = PROJECT_ROOT / "data" / "reference-scores" / "mteb_reference_scores.json"
"""The shipped snapshot of published scores (``data/README.md`` gives its source)."""


def published_scores(path: str | Path = PUBLISHED_SCORES_FILE) -> dict[tuple[str, str, str], float]:
    """Published main scores: ``(model, task, split) -> score``.

    From the snapshot of embeddings-benchmark/results shipped in
    ``data/reference-scores/`` (model names with ``/``, as mteb writes them).

    Args:
        path: the snapshot (:data:`PUBLISHED_SCORES_FILE`).
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

    Args:
        output_dir: root of the results layout.
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
        f"{relative}/ (from {display_path(Path(output_dir))}) to results/{relative}/ in the fork, "
        "and open a pull request.",
    ]
    if str(meta.revision) == "local" or str(meta.name).startswith("local/"):
        lines.append(
            "This model is a local folder: publish it on the hub first, so that its results "
            "are filed under its hub name and revision."
        )
    if local:
        lines.append(
            f"Not submittable: {', '.join(local)} (computed from local data, dataset_revision "
            f"{LOCAL_PREFIX}...); run them on the hub's data (no local folder) first."
        )
    return "\n".join(lines)
