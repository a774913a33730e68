"""A Ray cluster for the project's runs: the executor argument, joining or starting Ray,
and the check that every node sees the same result and cache folders.

``import ray`` happens only inside these functions: a local run pays no Ray import.

Every node must have the project's code importable in the Python that runs Ray's
workers: the ``helpers`` package installed (editable or not) in the same virtual
environment on every node, at the same path. A worker imports ``helpers`` by name; no code
is shipped with the job.
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")
"""What the ``executor`` parameters accept: this process, or a Ray cluster."""

WORKER_ENV_VARS = (
    "EMBEVAL_PROGRESS",
    "TQDM_DISABLE",
    "HF_HUB_DISABLE_PROGRESS_BARS",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "PYTHONWARNINGS",
    "MTEB_CACHE",
)
"""Environment variables handed to Ray's worker processes when set in the driver: they
keep workers as quiet and as offline as the driver."""

PROBE_PREFIX = ".embeval-storage-probe-"
"""Start of the names of the probe files :func:`check_shared_storage` writes (and deletes)."""

_ADDRESS = re.compile(r"(ray://)?[A-Za-z0-9_.\-]+:\d{1,5}")

SHARED_STORAGE_HINT = (
    "output_dir and cache_dir must be on a filesystem every node mounts at the same path "
    "(NFS, a cluster filesystem)"
)


START_ATTEMPTS = 3
"""How many times :func:`connect` tries to start Ray on this machine. On a loaded machine
a start can fail: Ray's raylet waits a fixed 15 s for its agent processes to write their
ports (ray-project/ray#65983) and the start then times out. The processes of a failed
start are ended by Ray's reaper when this Python process exits."""


def _start_timed_out(err: Exception) -> bool:
    """Whether ``ray.init`` failed because the node did not come up in time."""
    return "timed out during startup" in str(err) or isinstance(err, TimeoutError)


class StorageError(ValueError):
    """A folder the run writes is not the same folder on every node of the cluster."""


@dataclass(frozen=True)
class RayCluster:
    """The Ray cluster a run uses.

    Attributes:
        address: the cluster's GCS address (``host:port``).
        num_cpus: CPUs of the whole cluster (Ray's ``CPU`` resource).
        num_gpus: GPUs of the whole cluster (Ray's ``GPU`` resource; 0 without).
        nodes: alive nodes.
        started_here: True when :func:`connect` started Ray on this machine (then
            :func:`shutdown` stops it); False when it joined a running cluster or reused
            the Ray already initialised in this process.
        start_seconds: wall time :func:`connect` took (start or join).
    """

    address: str
    num_cpus: int
    num_gpus: int
    nodes: int
    started_here: bool
    start_seconds: float


def check_executor(executor: str, ray_address: str, cache_dir: str | None = None) -> None:
    """Check the ``executor`` and ``ray_address`` parameters before anything runs.

    Args:
        executor: ``"local"`` (this process) or ``"ray"``.
        ray_address: ``""`` (start Ray on this machine), ``"auto"`` (join the cluster this
            machine belongs to), ``"ray://host:port"`` (Ray client) or ``"host:port"`` (a
            cluster's GCS address); only with ``executor="ray"``.
        cache_dir: for a run whose Ray workers hand their vectors over through the
            embedding cache (notebook 1): the cache folder, which ``executor="ray"``
            needs (``""``: an error); None: not checked.

    Raises:
        ValueError: naming the parameter and what was expected.
    """
    if executor not in EXECUTORS:
        raise ValueError(
            f"executor: expected one of {', '.join(repr(e) for e in EXECUTORS)}, got {executor!r}"
        )
    if not isinstance(ray_address, str):
        raise ValueError(f"ray_address: expected a string, got {type(ray_address).__name__}")
    address = ray_address.strip()
    if address and address != "auto" and not _ADDRESS.fullmatch(address):
        raise ValueError(
            "ray_address: expected '' (start Ray on this machine), 'auto', "
            f"'ray://host:port' or 'host:port', got {ray_address!r}"
        )
    if address and executor == "local":
        raise ValueError(
            f"ray_address: {ray_address!r} was given with executor 'local', which does not "
            "use Ray; set executor='ray' to run on that cluster, or leave ray_address empty"
        )
    if executor == "ray" and cache_dir is not None and not cache_dir:
        raise ValueError(
            "cache_dir: executor 'ray' needs the embedding cache (the workers write the "
            "corpus vectors into it), got ''; give a folder every node sees, e.g. "
            "'results/cache'"
        )


def worker_env_vars() -> dict[str, str]:
    """The driver's values of :data:`WORKER_ENV_VARS` that are set."""
    return {name: os.environ[name] for name in WORKER_ENV_VARS if name in os.environ}


def _describe(started_here: bool, seconds: float) -> RayCluster:
    import ray

    resources = ray.cluster_resources()
    return RayCluster(
        address=str(ray.get_runtime_context().gcs_address),
        num_cpus=int(resources.get("CPU", 0)),
        num_gpus=int(resources.get("GPU", 0)),
        nodes=len(_alive_nodes()),
        started_here=started_here,
        start_seconds=seconds,
    )


def connect(ray_address: str = "", num_cpus: int | None = None) -> RayCluster:
    """Start Ray on this machine, or join a cluster; reuse Ray when already initialised.

    A Ray started here that times out during its start (a loaded machine) is started
    again, up to :data:`START_ATTEMPTS` times in all.

    Worker processes get the driver's values of :data:`WORKER_ENV_VARS` (quiet, offline),
    through the job's ``runtime_env``. The project's code must be importable on every node
    (the ``helpers`` package installed in the same virtual environment, e.g. editable from
    the same checkout path); nothing is uploaded with the job. Ray's dashboard is not
    started and workers' output is not forwarded to the driver.

    Args:
        ray_address: ``""``: start a Ray instance on this machine; ``"auto"``,
            ``"host:port"`` or ``"ray://host:port"``: join that cluster.
        num_cpus: CPUs of a Ray started here (None: every core); must be None when
            joining a cluster.

    Returns:
        The cluster (:class:`RayCluster`).

    Raises:
        ValueError: for a malformed ``ray_address``, or ``num_cpus`` that is not a
            positive integer or is given with an address.
    """
    check_executor("ray", ray_address)
    if num_cpus is not None and (
        isinstance(num_cpus, bool) or not isinstance(num_cpus, int) or num_cpus < 1
    ):
        raise ValueError(f"num_cpus: expected a positive integer or None, got {num_cpus!r}")
    if num_cpus is not None and ray_address.strip():
        raise ValueError(
            "num_cpus: only for a Ray started on this machine (ray_address ''); a joined "
            "cluster has the CPUs its nodes declare"
        )
    import ray

    start = time.monotonic()
    if ray.is_initialized():
        return _describe(False, time.monotonic() - start)
    address = ray_address.strip() or None
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            ray.init(
                address=address,
                num_cpus=num_cpus,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
                runtime_env={"env_vars": worker_env_vars()},
            )
            break
        except Exception as err:
            if address is not None or attempt == START_ATTEMPTS or not _start_timed_out(err):
                raise
            logger.warning(
                "Ray did not start on this machine (%s); trying again (%d of %d)",
                err, attempt + 1, START_ATTEMPTS,
            )  # fmt: skip
            ray.shutdown()
    cluster = _describe(address is None, time.monotonic() - start)
    logger.info(
        "Ray %s at %s: %d node(s), %d CPU(s), %d GPU(s), in %.1f s",
        "started" if cluster.started_here else "joined",
        cluster.address,
        cluster.nodes,
        cluster.num_cpus,
        cluster.num_gpus,
        cluster.start_seconds,
    )
    return cluster


def shutdown(cluster: RayCluster) -> None:
    """Stop Ray when :func:`connect` started it here (a joined cluster keeps running).

    Args:
        cluster: from :func:`connect`.
    """
    if cluster.started_here:
        import ray

        ray.shutdown()


def for_workers(model: str) -> str:
    """A model's name as a Ray worker loads it: a local folder as an absolute path (a
    worker's working directory may differ from the driver's), anything else as given.

    Args:
        model: hub id, local folder, or the embedded default's name.
    """
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else model


def _alive_nodes() -> list[dict[str, str]]:
    """``{"id", "ip"}`` of every alive node."""
    import ray

    return [
        {"id": str(node["NodeID"]), "ip": str(node.get("NodeManagerAddress", "?"))}
        for node in ray.nodes()
        if node.get("Alive")
    ]


def storage_probe(folder: str, driver_file: str, probe_name: str, token: str) -> dict[str, Any]:
    """What one node sees of ``folder`` (runs in a Ray task pinned to the node).

    Writes ``<folder>/<probe_name>`` holding ``token`` and reads ``driver_file``.

    Args:
        folder: the folder, as an absolute path of the driver.
        driver_file: a file the driver wrote in it.
        probe_name: the name of the file to write.
        token: what to write into it.

    Returns:
        ``{"is_dir": bool, "driver_file": its text or None, "error": "" or why the probe
        file could not be written}``.
    """
    path = Path(folder)
    report: dict[str, Any] = {"is_dir": path.is_dir(), "driver_file": None, "error": ""}
    try:
        report["driver_file"] = Path(driver_file).read_text()
    except OSError:
        pass
    try:
        (path / probe_name).write_text(token)
    except OSError as err:
        report["error"] = f"{type(err).__name__}: {err}"
    return report


def _probe_nodes(
    nodes: list[dict[str, str]], folder: Path, driver_file: Path, names: list[str], token: str
) -> list[dict[str, Any]]:
    """:func:`storage_probe` on every node (one Ray task each, pinned), in node order."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(storage_probe)
    refs = [
        probe.options(
            num_cpus=0,
            max_retries=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node["id"], soft=False),
        ).remote(str(folder), str(driver_file), name, token)
        for node, name in zip(nodes, names, strict=True)
    ]
    return list(ray.get(refs))


def check_shared_storage(cluster: RayCluster, folders: Mapping[str, str | Path]) -> None:
    """Check that every node of the cluster sees each folder as the driver does.

    For each folder (created on the driver when missing), the driver writes a uniquely
    named file; one Ray task per alive node, pinned to it, reads that file and writes its
    own uniquely named file, which the driver must then see with the same content. Every
    probe file is deleted afterwards. Paths are made absolute on the driver: a worker
    uses the same path.

    Args:
        cluster: from :func:`connect`.
        folders: parameter name -> folder, e.g. ``{"output_dir": ..., "cache_dir": ...}``.

    Raises:
        StorageError: naming the parameter, the folder and the node, when a node does not
            see the folder, the driver's file, or cannot write there, or when the driver
            does not see what a node wrote.
    """
    nodes = _alive_nodes()
    for param, value in folders.items():
        folder = Path(os.path.abspath(Path(value).expanduser()))
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StorageError(f"{param}: cannot create folder {str(folder)!r}: {err}") from err
        run = uuid.uuid4().hex
        token = f"{run} {time.time()}"
        driver_file = folder / f"{PROBE_PREFIX}{run}-driver"
        names = [f"{PROBE_PREFIX}{run}-node{i}" for i in range(len(nodes))]
        try:
            driver_file.write_text(token)
            reports = _probe_nodes(nodes, folder, driver_file, names, token)
            for node, name, report in zip(nodes, names, reports, strict=True):
                problem = _probe_problem(report, folder / name, token)
                if problem:
                    raise StorageError(
                        f"{param}: folder {str(folder)!r} is not shared with node "
                        f"{node['id'][:12]} ({node['ip']}): {problem}. {SHARED_STORAGE_HINT}"
                    )
        finally:
            for path in [driver_file, *(folder / name for name in names)]:
                path.unlink(missing_ok=True)
    logger.info("shared storage checked on %d node(s): %s", len(nodes), ", ".join(folders))


def _probe_problem(report: Mapping[str, Any], written: Path, token: str) -> str:
    """Why one node's probe shows a folder that is not the driver's ("" when it is)."""
    if not report["is_dir"]:
        return "the folder does not exist there"
    if report["driver_file"] != token:
        return "the node does not see the file the driver wrote there"
    if report["error"]:
        return f"the node cannot write there ({report['error']})"
    try:
        seen = written.read_text()
    except OSError:
        return "the driver does not see the file the node wrote there"
    if seen != token:
        return "the driver reads other content in the file the node wrote there"
    return ""
