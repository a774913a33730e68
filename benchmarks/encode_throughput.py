"""Encoding throughput: the helpers' path vs the raw forward pass vs sentence-transformers.

All three run in one process on the same passages (TREC DL 2019 slice, shipped):

* raw: the forward pass (plus pooling and normalisation) alone, on batches tokenised,
  padded, length-sorted and moved to the device beforehand: the model's limit;
* ours: ``helpers.models.load_encoder(...).encode_corpus`` (what the notebooks use),
  tokenising included;
* sentence-transformers: ``SentenceTransformer.encode``.

    .venv/bin/python benchmarks/encode_throughput.py --device cpu --passages 1024

The last line printed is one JSON object: ratio_vs_raw_forward (ours / raw),
speedup_vs_sentence_transformers (ours / sentence-transformers), passages_per_s (ours),
raw_passages_per_s, st_passages_per_s.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from helpers.data import load_retrieval_data
from helpers.models import load_encoder, read_model_config, resolve_model
from helpers.notebook import project_path, setup


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def raw_forward(path: str, texts: list[str], batch_size: int, device: str, fp16: bool) -> float:
    """Passages per second of the forward pass alone (inputs prepared beforehand)."""
    from transformers import AutoModel, AutoTokenizer

    cfg = read_model_config(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).to(device).eval()
    if fp16:
        model.half()
    order = np.argsort([-len(t) for t in texts])
    batches = []
    for start in range(0, len(texts), batch_size):
        part = [texts[i] for i in order[start : start + batch_size]]
        enc = tokenizer(
            part, padding=True, truncation=True, max_length=cfg.max_length, return_tensors="pt"
        )
        batches.append({k: v.to(device) for k, v in enc.items()})
    with torch.inference_mode():
        out = model(**batches[0])  # warm-up
        _sync(device)
        start = time.perf_counter()
        for batch in batches:
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1)
            torch.nn.functional.normalize(pooled.float(), dim=-1).cpu()
        _sync(device)
        del out
    return len(texts) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--passages", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--backend", default="sentence-transformers")
    args = parser.parse_args()
    setup(progress=False)
    data = load_retrieval_data(project_path("data/msmarco-dl19/beir"))
    texts = list(data.corpus.values())[: args.passages]
    fp16 = args.device.startswith("cuda")
    path, _ = resolve_model("sentence-transformers/all-MiniLM-L6-v2")

    raw = raw_forward(path, texts, args.batch_size, args.device, fp16)

    ours_encoder = load_encoder(
        backend=args.backend, batch_size=args.batch_size, device=args.device, use_fp16=fp16
    )
    ours_encoder.encode_corpus(texts[: args.batch_size])  # warm-up
    _sync(args.device)
    start = time.perf_counter()
    ours_vectors = ours_encoder.encode_corpus(texts)
    _sync(args.device)
    ours = len(texts) / (time.perf_counter() - start)

    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(path, device=args.device)
    if fp16:
        st.half()
    st.encode(texts[: args.batch_size], batch_size=args.batch_size, show_progress_bar=False)
    _sync(args.device)
    start = time.perf_counter()
    st_vectors = st.encode(
        texts, batch_size=args.batch_size, show_progress_bar=False, normalize_embeddings=True
    )
    _sync(args.device)
    st_rate = len(texts) / (time.perf_counter() - start)
    min_cos = float(np.min(np.sum(ours_vectors * st_vectors.astype(np.float32), axis=1)))

    device_name = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else f"cpu, {torch.get_num_threads()} threads"
    )
    print(
        json.dumps(
            {
                "benchmark": "encode_throughput",
                "device": device_name,
                "passages": len(texts),
                "batch_size": args.batch_size,
                "backend": args.backend,
                "ratio_vs_raw_forward": round(ours / raw, 3),
                "speedup_vs_sentence_transformers": round(ours / st_rate, 3),
                "passages_per_s": round(ours, 1),
                "raw_passages_per_s": round(raw, 1),
                "st_passages_per_s": round(st_rate, 1),
                "min_cosine_ours_vs_st": round(min_cos, 6),
            }
        )
    )


if __name__ == "__main__":
    main()
