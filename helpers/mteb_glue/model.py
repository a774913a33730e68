"""The model under test for mteb: its real identity and mteb's wrapper around it.

:func:`model_meta` gives mteb's ``ModelMeta`` (official name and revision, so results are
filed where mteb's result layout expects them). :func:`load_mteb_model` loads the model
with the project's one loader (:func:`helpers.models.build_encoder`: the backends, dtype
policy and fingerprint of notebook 1) and wraps it in mteb's sentence-transformers wrapper,
whose text ``encode`` is the encoder's (:meth:`helpers.models.EncoderBase.encode_prompted`),
through the embedding cache when one is given (:func:`helpers.models.cached`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helpers.models import (
    DEFAULT_MODEL,
    Encoder,
    EncoderSpec,
    build_encoder,
    cached,
    check_workers,
    load_dtype,
    pick_device,
    resolve_model,
)


def model_meta(model: str = DEFAULT_MODEL) -> Any:
    """mteb's ``ModelMeta`` for a model: the registry's entry when mteb knows the name.

    The embedded default is mteb's ``sentence-transformers/all-MiniLM-L6-v2`` at revision
    ``8b3219a9...``, the revision of the published results. A local folder gets the name
    ``local/<folder>`` and revision ``local``; a hub id mteb's registry does not hold keeps
    its name with revision ``main``.

    Args:
        model: hub id, local folder, or the embedded default's name.
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
    except KeyError:  # mteb's "not found in MTEB registry" (any other error is raised)
        return ModelMeta.create_empty(overwrites=dict(name=model, revision="main"))


def load_mteb_model(
    model: str = DEFAULT_MODEL,
    device: str = "auto",
    cache_dir: str | Path | None = None,
    batch_size: int | None = None,
    workers: int | None = None,
    pipeline: bool = True,
    dtype: str | None = None,
    show_progress: bool = False,
) -> Any:
    """Load a sentence-transformers model as an mteb encoder that carries its real identity.

    The weights load from the resolved path (the packaged copy for the embedded default,
    offline), and the wrapper's ``mteb_model_meta`` is :func:`model_meta`, so results are
    filed under the official name and revision instead of ``no_model_name_available``.
    Every text ``encode`` mteb makes goes through the same encoder as notebook 1: the
    helpers' pipeline (:mod:`helpers.encoding`; with ``pipeline=False``, or for a model it
    cannot reproduce, sentence-transformers called as mteb calls it) and, with
    ``cache_dir``, the embedding cache. Its vectors are mteb's: normalised only where the
    model's own modules normalise, with the model's prompts for each task.

    Args:
        model: hub id, local folder, or the embedded default's name.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        cache_dir: the embedding cache's folder; None: no cache.
        batch_size: the pipeline's texts per forward pass; None: 256 on a GPU, 64 on a
            CPU (where larger batches of short texts run slower). mteb's own
            ``batch_size`` applies to sentence-transformers.
        workers: the pipeline's tokenising threads (None: by device).
        pipeline: use the helpers' pipeline where the model allows.
        dtype: what the model runs in: ``"float32"``, ``"bfloat16"`` (a GPU that has
            it, or a CPU with AMX or AVX512-BF16) or ``"float16"`` (a GPU only); None
            (or ``""``): on a GPU, the dtype the checkpoint is stored in (as mteb loads
            it), on the CPU float32 (:func:`helpers.models.load_dtype`). The vectors are
            pooled and normalised in float32 whatever the dtype, and the embedding
            cache keys on it, so entries of one dtype never serve another.
        show_progress: progress bars while encoding (the pipeline's, and the cache's over
            its chunks); they change nothing in the vectors or the cache key.

    Returns:
        mteb's ``SentenceTransformerEncoderWrapper`` with ``encoder`` (the project's
        encoder, cached or not) and ``model`` (the ``SentenceTransformer``).

    Raises:
        helpers.models.ModelError: when the model cannot be resolved or loaded, or for a
            device, dtype or worker count that does not fit (a dtype that cannot run on
            the device is an error naming ``dtype``, never replaced by float32).
    """
    check_workers(workers)
    devices = [pick_device(device)]
    run_dtype = load_dtype(dtype, False, devices, checkpoint_on_gpu=True)
    path, _ = resolve_model(model)
    meta = model_meta(model)
    spec = EncoderSpec(
        model=model,
        path=path,
        name=meta.name,
        revision=str(meta.revision),
        backend="pipeline" if pipeline else "sentence-transformers",
        devices=tuple(devices),
        dtype=run_dtype,
        batch_size=batch_size or (256 if devices[0].startswith("cuda") else 64),
        workers=workers,
        normalize=None,  # as mteb encodes: the model's own Normalize module, if any
        show_progress=show_progress,
    )
    encoder = build_encoder(spec)
    wrapper: Any = _wrapper_class()(encoder.model)
    wrapper.encoder = cached(encoder, cache_dir) if cache_dir else encoder
    wrapper.mteb_model_meta = meta
    return wrapper


def _wrapper_class() -> type:
    """mteb's sentence-transformers wrapper with its text encoding done by the project's
    encoder (:meth:`helpers.models.EncoderBase.encode_prompted`)."""
    from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper

    class HelpersSentenceTransformerWrapper(SentenceTransformerEncoderWrapper):  # type: ignore[misc]
        encoder: Encoder

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
            if set(features) - {"text", "id", "title"}:  # images, audio: mteb's own path
                return super().encode(
                    inputs,
                    task_metadata=task_metadata,
                    hf_split=hf_split,
                    hf_subset=hf_subset,
                    prompt_type=prompt_type,
                    **kwargs,
                )
            texts = [text for batch in inputs for text in batch["text"]]
            # the model's prompt for what mteb encodes now (its get_prompt_name)
            name = self.get_prompt_name(task_metadata, prompt_type)
            prompt = self.model_prompts.get(name) if name and self.model_prompts else None
            kind = getattr(prompt_type, "value", None)
            return self.encoder.encode_prompted(texts, prompt, kind, **kwargs)

    return HelpersSentenceTransformerWrapper
