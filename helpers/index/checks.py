"""Checks made before any vector is computed: metric, ``index_factory`` strings, FAISS
search parameters, and the number of vectors an index needs to train on.

Search parameters are FAISS's ParameterSpace syntax (``"nprobe=32"``, ``"efSearch=128"``,
``"nprobe=16,quantizer_efSearch=64"``); their form is read here, and whether an index type
accepts them is FAISS's to say (asked on an empty index of that type). FAISS is imported
when first needed.
"""

from __future__ import annotations

import math
import numbers
import re
import warnings
from typing import Any

#: The metrics an index compares vectors with, and FAISS's name for each.
FAISS_METRICS = {"ip": "METRIC_INNER_PRODUCT", "l2": "METRIC_L2"}
#: FAISS wants about this many training vectors per centroid (it warns below it).
TRAINING_POINTS_PER_CENTROID = 39
#: search parameters that only make sense as positive integers (FAISS would wrap -1 around)
_POSITIVE_INTEGER_PARAMS = ("nprobe", "efSearch")


class SearchIndexError(ValueError):
    """Raised when an index cannot be built, searched or loaded as asked."""


def check_metric(metric: str) -> None:
    """Refuse a metric FAISS is not asked for here.

    Raises:
        SearchIndexError: naming ``metric`` and the metrics of :data:`FAISS_METRICS`.
    """
    if metric not in FAISS_METRICS:
        raise SearchIndexError(f"metric: expected one of {list(FAISS_METRICS)}, got {metric!r}")


def parse_search_params(params: str) -> list[str]:
    """Split FAISS ParameterSpace syntax (``"nprobe=16,quantizer_efSearch=64"``) into parts.

    Only the form is checked here (``name=number`` pairs, each name once, ``nprobe`` and
    ``efSearch`` positive integers); whether the index accepts a name is FAISS's to say.

    Returns:
        the parts, stripped, in order (``[]`` for ``""``).

    Raises:
        SearchIndexError: naming ``search_params`` and the part it cannot read.
    """
    if not isinstance(params, str):
        raise SearchIndexError(
            f"search_params: expected a string such as 'nprobe=32', got {type(params).__name__}"
        )
    parts: list[str] = []
    seen: set[str] = set()
    for raw in params.split(","):
        part = raw.strip()
        if not part:
            continue
        match = re.fullmatch(r"([A-Za-z_]\w*)=([^=\s]+)", part)
        value = math.nan
        if match:
            try:
                value = float(match[2])
            except ValueError:
                pass
        if not match or not math.isfinite(value):
            raise SearchIndexError(
                f"search_params: cannot read {part!r} in {params!r}: expected name=number "
                "pairs separated by commas, e.g. 'nprobe=32', 'efSearch=128' or "
                "'nprobe=16,quantizer_efSearch=64'"
            )
        name = match[1]
        if name in seen:
            raise SearchIndexError(f"search_params: {name} is given twice in {params!r}")
        seen.add(name)
        if name.split("_")[-1] in _POSITIVE_INTEGER_PARAMS and (value < 1 or value != int(value)):
            raise SearchIndexError(f"search_params: {part!r}: {name} must be a positive integer")
        parts.append(part)
    return parts


def merge_search_params(current: str, new: str) -> str:
    """``current`` with the parameters ``new`` names replaced or added, in order: what an
    index holds after ``new`` is applied on top of ``current``."""
    merged = {part.split("=")[0]: part for part in parse_search_params(current)}
    merged.update({part.split("=")[0]: part for part in parse_search_params(new)})
    return ",".join(merged.values())


def _accepted_params(space: Any, index: Any) -> list[str]:
    """The parameter names FAISS's ``space`` offers to tune on ``index``."""
    space.initialize(index)
    ranges = space.parameter_ranges
    return [ranges.at(i).name for i in range(ranges.size())]


def apply_search_params(space: Any, index: Any, params: str, factory: str, where: str) -> None:
    """Apply ``params`` to ``index`` with ``space.set_index_parameters``, part by part, so
    that an error names the part FAISS refused and the parameters it accepts."""
    for part in parse_search_params(params):
        try:
            space.set_index_parameters(index, part)
        except RuntimeError as err:
            accepted = _accepted_params(space, index)
            detail = str(err).strip().splitlines()[-1].split(":")[-1].strip()
            if accepted:
                hint = "parameters it accepts: " + ", ".join(accepted)
            else:
                hint = "it takes no search parameters: leave search_params empty"
            raise SearchIndexError(
                f"search_params: FAISS cannot set {part!r} on {where}{factory!r} index "
                f"({detail}); {hint}"
            ) from err


def _factory_rejected(factory: str, err: RuntimeError) -> SearchIndexError:
    """The error for a factory string FAISS refused, with examples of valid ones."""
    return SearchIndexError(
        f"index_factory: FAISS rejected {factory!r} (examples: 'Flat', 'HNSW32', "
        f"'IVF256,Flat', 'IVF256,PQ16', 'SQ8'): {str(err).strip().splitlines()[-1]}"
    )


def _trained_centroids(factory: str) -> list[tuple[str, int]]:
    """What an index trains k-means for, read from its factory string: ``("IVF256", 256)``
    for the coarse quantizer, ``("PQ16", 256)`` per product quantizer (2^nbits centroids
    per sub-quantizer: ``PQ16x4`` has 16), ``OPQ`` rotations included. Components inside
    parentheses (an IVF's own quantizer) train on centroids, not on the vectors: skipped."""
    outer = factory
    while "(" in outer:  # drop nested parentheses, innermost first
        stripped = re.sub(r"\([^()]*\)", "", outer)
        if stripped == outer:
            break
        outer = stripped
    needs: list[tuple[str, int]] = []
    ivf = re.search(r"(?<![A-Za-z])IVF(\d+)", outer)
    if ivf:
        needs.append((f"IVF{ivf[1]}", int(ivf[1])))
    for pq in re.finditer(r"(?<![A-Za-z])(O?PQ\d+)(?:x(\d+))?", outer):
        needs.append((pq[0], 2 ** int(pq[2] or 8)))
    return needs


def is_count(value: object) -> bool:
    """An integer (Python's or NumPy's), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_training_size(factory: str, num_vectors: int, warn: bool, source: str = "") -> None:
    """Refuse (and with ``warn``, warn about) too few training vectors for ``factory``.

    FAISS's k-means needs at least one training vector per centroid (it fails otherwise)
    and wants about :data:`TRAINING_POINTS_PER_CENTROID` (it warns otherwise). Every
    shortfall is checked before anything is warned about.

    Args:
        source: appended to the count in messages, e.g. ``" (train_size=200)"``.
    """
    per = TRAINING_POINTS_PER_CENTROID
    root = math.sqrt(num_vectors)
    usual = f"IVF{max(1, round(root))} to IVF{max(1, round(4 * root))} for N={num_vectors}"
    problems: list[str] = []  # too few to train at all: errors
    notes: list[str] = []  # too few for a good clustering: warnings
    for name, centroids in _trained_centroids(factory):
        if name.startswith("IVF"):
            what = f"has {centroids} lists ({name})"
            fix = (
                f"use fewer lists, about sqrt(N) to 4*sqrt(N) ({usual}; IVF"
                f"{max(1, num_vectors // per)} or fewer for {per} training vectors per list), "
                "or 'Flat' (exact search) for so few vectors"
            )
        else:
            what = f"trains {name} with {centroids} centroids per sub-quantizer"
            if name.startswith("OPQ"):
                fix = "drop the OPQ rotation, use an index without PQ, or train on more vectors"
            else:
                fewer_bits = f"fewer bits per code ('{name.split('x')[0]}x4': 16 centroids), "
                fix = (
                    f"use {fewer_bits if centroids > 16 else ''}an index without PQ "
                    "('Flat', 'SQ8', 'IVF<n>,Flat'), or train on more vectors"
                )
        if num_vectors < centroids:
            problems.append(
                f"index_factory: {factory!r} {what}, but there are only {num_vectors} "
                f"vectors to train on{source}; FAISS needs at least one per centroid "
                f"({centroids}): {fix}"
            )
        elif num_vectors < per * centroids:
            notes.append(
                f"index_factory: {factory!r} {what} for only {num_vectors} training "
                f"vectors{source}; FAISS wants about {per} per centroid ({per * centroids}): "
                f"the clustering will be poor; {fix}"
            )
    if problems:
        raise SearchIndexError(problems[0])
    for note in notes if warn else []:
        warnings.warn(note, UserWarning, stacklevel=3)


def check_factory(
    factory: str, metric: str = "ip", dim: int = 64, num_vectors: int | None = None
) -> None:
    """Check an ``index_factory`` string and a metric before any vector is computed.

    Pass the model's ``dim``: some indexes only fit some dimensions (``PQm`` needs m to
    divide it). Pass ``num_vectors``, the number of vectors the index will be trained on,
    to learn now what FAISS would only say after the whole corpus is encoded: an
    ``IVF<n>`` index needs at least n vectors (one per list; about 39 per list for a good
    clustering, warned below that: sqrt(N) to 4*sqrt(N) lists is the usual choice), and a
    product quantizer ``PQ<m>`` (``PQ<m>x<nbits>``) at least 2^nbits (256 with the default
    8 bits).

    Raises:
        SearchIndexError: when FAISS rejects the string, the metric is unknown, there are
            no vectors, or too few vectors to train the index.

    Warns:
        UserWarning: when there are fewer than about 39 training vectors per centroid.
    """
    import faiss

    check_metric(metric)
    try:
        faiss.index_factory(dim, factory, getattr(faiss, FAISS_METRICS[metric]))
    except RuntimeError as err:
        raise _factory_rejected(factory, err) from err
    if num_vectors is not None:
        if not is_count(num_vectors) or num_vectors < 1:
            raise SearchIndexError(
                "num_vectors: expected the number of vectors to index (at least 1), "
                f"got {num_vectors!r}"
            )
        check_training_size(factory, int(num_vectors), warn=True)


def check_search_params(factory: str, params: str, dim: int = 64) -> None:
    """Check FAISS search parameters against an index type before any vector is computed.

    ``params`` is FAISS's ParameterSpace syntax (``"nprobe=32"``, ``"efSearch=128"``,
    ``"nprobe=16,quantizer_efSearch=64"``; ``""``: FAISS's defaults). They are set with
    ``faiss.ParameterSpace().set_index_parameters`` on an empty index made from
    ``factory`` (nothing is trained), as :meth:`helpers.index.DocIndex.set_search_params`
    sets them.

    Raises:
        SearchIndexError: naming ``search_params``, the part that cannot be read or set and
            the parameters the index type accepts (``nprobe`` for IVF, ``efSearch`` for
            HNSW, none for ``Flat``), or when FAISS rejects ``factory``.
    """
    parts = parse_search_params(params)
    if not parts:
        return
    import faiss

    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError:
        try:  # a few index types exist for L2 only; parameters do not depend on the metric
            index = faiss.index_factory(dim, factory, faiss.METRIC_L2)
        except RuntimeError as err:
            raise _factory_rejected(factory, err) from err
    apply_search_params(faiss.ParameterSpace(), index, ",".join(parts), factory, "a ")
