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

The modules, one job each (each imports only those above it in this list):

* :mod:`~helpers.mteb_glue.errors`: :class:`MtebGlueError`;
* :mod:`~helpers.mteb_glue.model`: the model's identity and mteb's wrapper around it;
* :mod:`~helpers.mteb_glue.selection`: tasks by benchmark, name and type;
* :mod:`~helpers.mteb_glue.task_files`: the files a task needs locally, and the checks;
* :mod:`~helpers.mteb_glue.local_data`: a task pointed at a local folder, and its loader;
* :mod:`~helpers.mteb_glue.runner`: the resumable runner and the data fingerprint;
* :mod:`~helpers.mteb_glue.results`: results read back, summaries, reports;
* :mod:`~helpers.mteb_glue.tables`: the notebooks' tables;
* :mod:`~helpers.mteb_glue.card`: published scores, model cards, submission.

A notebook's cells, in order::

    tasks = G.select_tasks(benchmark, tasks, task_types)
    sources = G.attach_local_data(tasks, data_root)          # or G.use_local_data(task, dir)
    outcomes = G.run_tasks(G.load_mteb_model(model), tasks, out)
    summary = G.summarize(G.load_task_results(folder), tasks, outcomes)
    G.per_task_frame(summary); G.averages_frame(summary); print(G.summary_text(summary))
    comparison = G.comparison_frame(summary, name, G.published_scores(), references)
    print(G.reproduction_summary(comparison, summary))
    print(G.failure_report(outcomes, tasks, data_root))
    # several models: G.leaderboard_frame({name: summary, ...}, G.published_scores(), references)
    G.model_card(name, tasks, out, card); print(G.submission_instructions(out, meta))
"""

from helpers.mteb_glue.card import (
    PUBLISHED_SCORES_FILE,
    SUBMISSION_NOTE,
    model_card,
    published_scores,
    result_cache,
    submission_instructions,
)
from helpers.mteb_glue.errors import MtebGlueError
from helpers.mteb_glue.local_data import (
    LocalSource,
    attach_local_data,
    local_source,
    use_local_data,
)
from helpers.mteb_glue.model import load_mteb_model, model_meta
from helpers.mteb_glue.results import (
    MISSING_REASONS,
    PUBLISHED_SUFFIX,
    REPRODUCTION_CAUSES,
    compare_with_published,
    failure_report,
    leaderboard,
    load_task_results,
    main_scores,
    reproduction_summary,
    score_table,
    scores_at_cutoffs,
    summarize,
    summary_text,
    task_averages,
)
from helpers.mteb_glue.runner import (
    LOCAL_PREFIX,
    TaskOutcome,
    data_fingerprint,
    is_finished,
    result_folder,
    result_path,
    run_tasks,
    save_task_result,
)
from helpers.mteb_glue.selection import BENCHMARK_ALIASES, select_tasks, task_types
from helpers.mteb_glue.tables import (
    averages_frame,
    comparison_frame,
    leaderboard_frame,
    outcomes_frame,
    per_task_frame,
    type_leaderboard_frame,
)
from helpers.mteb_glue.task_files import (
    expected_sizes,
    local_data_mismatch,
    local_data_problem,
    required_columns,
    required_files,
)

__all__ = [
    "BENCHMARK_ALIASES",
    "LOCAL_PREFIX",
    "MISSING_REASONS",
    "PUBLISHED_SCORES_FILE",
    "PUBLISHED_SUFFIX",
    "REPRODUCTION_CAUSES",
    "SUBMISSION_NOTE",
    "LocalSource",
    "MtebGlueError",
    "TaskOutcome",
    "attach_local_data",
    "averages_frame",
    "compare_with_published",
    "comparison_frame",
    "data_fingerprint",
    "expected_sizes",
    "failure_report",
    "is_finished",
    "leaderboard",
    "leaderboard_frame",
    "load_mteb_model",
    "load_task_results",
    "local_data_mismatch",
    "local_data_problem",
    "local_source",
    "main_scores",
    "model_card",
    "model_meta",
    "outcomes_frame",
    "per_task_frame",
    "published_scores",
    "required_columns",
    "required_files",
    "reproduction_summary",
    "result_cache",
    "result_folder",
    "result_path",
    "run_tasks",
    "save_task_result",
    "score_table",
    "scores_at_cutoffs",
    "select_tasks",
    "submission_instructions",
    "summarize",
    "summary_text",
    "task_averages",
    "task_types",
    "type_leaderboard_frame",
    "use_local_data",
]
