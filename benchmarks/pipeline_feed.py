"""How fast the pipeline can feed a device: everything but the forward pass.

On a GPU the forward pass of a small model outruns one CPU core's tokenising many times
over, so the pipeline's speed there is set by how fast its worker threads tokenise, pad
and collate. This measures that rate on this machine, with the forward pass replaced by
nothing (``EncodingPipeline._embed`` copies the token ids to the device and returns a
zero row per text), for 0 (in line), 1, 2,
... worker threads, next to the tokenising that ``SentenceTransformer.encode`` does (the
transformers tokenizer called in the encoding thread):

    .venv/bin/python benchmarks/pipeline_feed.py --passages 20000
    python benchmarks/pipeline_feed.py --passages 40000 --workers 0 1 2 4 8 15 --model .gpu/model \
        --device cuda

If the threads released the GIL only partly, the rate would stop growing with threads;
``most_threads_over_in_line`` (the rate with the most threads over tokenising in line)
shows how much they add.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

from helpers.data import load_retrieval_data
from helpers.encoding import EncodingPipeline, available_cores
from helpers.models import DEFAULT_MODEL, resolve_model
from helpers.notebook import project_path, setup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--passages", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--device", default="cpu", help="cuda: pinned memory, as on a GPU")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=None, help="default: 0 to every core"
    )
    args = parser.parse_args()
    setup(progress=False)
    import torch
    from sentence_transformers import SentenceTransformer

    corpus = list(load_retrieval_data(project_path("data/msmarco-dl19/beir")).corpus.values())
    texts = (corpus * (args.passages // len(corpus) + 1))[: args.passages]
    st = SentenceTransformer(resolve_model(args.model)[0], device=args.device)

    rows = []
    for workers in args.workers or range(0, available_cores() + 1):
        pipeline = EncodingPipeline(st, batch_size=args.batch_size, workers=workers)
        pipeline.dim = 1

        def no_forward(input_ids: Any, attention_mask: Any, device: Any = pipeline.device) -> Any:
            ids = input_ids.to(device, non_blocking=True)  # the copy to the device stays
            return torch.zeros((len(ids), 1), device=device)

        pipeline._embed = no_forward  # type: ignore[method-assign]
        pipeline.encode(texts[: 4 * args.batch_size])
        start = time.perf_counter()
        out = pipeline.encode(texts)
        rate = len(texts) / (time.perf_counter() - start)
        assert out.shape == (len(texts), 1)
        rows.append({"workers": workers, "passages_per_s": round(rate, 1)})
        print(json.dumps(rows[-1]), flush=True)

    tokenizer = st.tokenizer
    order = np.argsort([-len(t) for t in texts], kind="stable")
    start = time.perf_counter()
    for begin in range(0, len(texts), args.batch_size):
        part = [texts[i] for i in order[begin : begin + args.batch_size]]
        tokenizer(part, padding=True, truncation=True, max_length=256, return_tensors="pt")
    st_rate = len(texts) / (time.perf_counter() - start)
    in_line = next((r["passages_per_s"] for r in rows if r["workers"] == 0), float("nan"))
    most = max(rows, key=lambda r: r["workers"])
    print(
        json.dumps(
            {
                "benchmark": "pipeline_feed",
                "cpu_cores": available_cores(),
                "passages": len(texts),
                "batch_size": args.batch_size,
                "rows": rows,
                "transformers_tokenizer_passages_per_s": round(st_rate, 1),
                "in_line_over_transformers_tokenizer": round(in_line / st_rate, 2),
                "most_threads_over_in_line": round(most["passages_per_s"] / in_line, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
