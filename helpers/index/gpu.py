"""Searching on a GPU: FAISS's GPU index when the installed FAISS has GPU support, else
exact search with torch (a matrix product and a top-k, ``Flat`` indexes only).

:meth:`helpers.index.DocIndex.to_device` picks the searcher; the functions here do the
moves and the searches. FAISS and torch are imported when first needed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from helpers.index.checks import SearchIndexError, apply_search_params


def has_gpu_faiss() -> bool:
    """Whether the installed FAISS has GPU support and sees at least one GPU."""
    import faiss

    return hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0


def faiss_gpu_copy(cpu_index: Any, device: str, factory: str) -> tuple[Any, Any]:
    """A GPU copy of ``cpu_index``: on GPU N for ``"cuda:N"``, spread over every GPU for
    ``"cuda"``.

    Args:
        cpu_index: the FAISS index on the CPU (left as it is).
        device: ``"cuda"`` or ``"cuda:N"``.
        factory: the index's factory string, for the error message.

    Returns:
        ``(GPU index, the StandardGpuResources it uses (None for every GPU))``.

    Raises:
        SearchIndexError: naming ``device`` when FAISS cannot move this index type (HNSW,
            ...), with the types it can.
    """
    import faiss

    try:
        if ":" in device:  # one GPU, as asked
            resources = faiss.StandardGpuResources()
            number = int(device.split(":")[1])
            return faiss.index_cpu_to_gpu(resources, number, cpu_index), resources
        return faiss.index_cpu_to_all_gpus(cpu_index), None
    except RuntimeError as err:
        raise SearchIndexError(
            f"device: FAISS cannot search a {factory!r} index on {device!r} "
            f"({str(err).strip().splitlines()[-1]}); search it on the CPU "
            "(device='cpu') or build a GPU-capable type (Flat, IVF<n>,Flat|PQ|SQ8)"
        ) from err


def set_gpu_search_params(gpu_index: Any, params: str, factory: str) -> None:
    """Apply ``params`` to a GPU copy (``faiss.GpuParameterSpace``: ``nprobe`` on GPU IVF
    indexes; FAISS's ``ParameterSpace`` where there is none).

    Raises:
        SearchIndexError: naming ``search_params``, the part the GPU copy refuses and the
            parameters it accepts.
    """
    import faiss

    gpu_space = getattr(faiss, "GpuParameterSpace", None)
    space = gpu_space() if gpu_space is not None else faiss.ParameterSpace()
    apply_search_params(space, gpu_index, params, factory, "the GPU copy of a ")


def vectors_on(cpu_index: Any, device: str) -> Any:
    """Every vector of a ``Flat`` index as a torch tensor on ``device``, for
    :func:`torch_search`."""
    import torch

    vectors = cpu_index.reconstruct_n(0, cpu_index.ntotal)
    return torch.from_numpy(vectors).to(device)


def torch_search(
    vectors: Any, queries: np.ndarray, k: int, metric: str, block: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top k with torch, ``block`` documents at a time (bounded memory).

    Args:
        vectors: the documents' vectors (a tensor from :func:`vectors_on`).
        queries: float32 array (n, dim).
        k: hits per query (at most the number of vectors).
        metric: ``"ip"`` (larger is better) or ``"l2"`` (squared L2, as FAISS reports it;
            smaller is better).
        block: documents per matrix product.

    Returns:
        ``(scores, positions)``, each (n, k), as FAISS ``Flat`` returns them (up to the
        order of tied scores).
    """
    import torch

    q = torch.from_numpy(queries).to(vectors.device)
    best_scores, best_positions = [], []
    for start in range(0, len(vectors), block):
        part = vectors[start : start + block]
        if metric == "ip":
            scores = q @ part.T
        else:  # squared L2, as FAISS reports it; smaller is better
            scores = -((q * q).sum(1, keepdim=True) - 2 * q @ part.T + (part * part).sum(1))
        top, pos = torch.topk(scores, min(k, len(part)), dim=1)
        best_scores.append(top)
        best_positions.append(pos + start)
    scores, positions = torch.cat(best_scores, 1), torch.cat(best_positions, 1)
    top, order = torch.topk(scores, k, dim=1)
    positions = torch.gather(positions, 1, order)
    if metric != "ip":
        top = -top
    return top.float().cpu().numpy(), positions.cpu().numpy().astype(np.int64)
