"""The streamed path of notebook 1, section 8.1, against the in-memory path.

The first 256 passages of the notebook's default corpus (the 5,000-passage slice of TREC
DL 2019), read record by record from the file, go through the embedding cache in chunks
(``encode_records``) into an index built chunk by chunk (``build_index_from_stream``).
Their vectors and the top 10 of every query must be those of the in-memory path
(``encode_corpus`` and ``build_index``).
"""

from __future__ import annotations

import itertools

import numpy as np

from helpers.cache import EmbeddingCache
from helpers.data import load_retrieval_data, stream_corpus
from helpers.index import build_index, build_index_from_stream, top_k_overlap
from helpers.models import DEFAULT_MODEL, cached, load_encoder
from helpers.notebook import PROJECT_ROOT

DEFAULT_DATASET = PROJECT_ROOT / "data" / "msmarco-dl19" / "beir"
PASSAGES = 256
CHUNK_SIZE = 64


def test_streamed_corpus_of_the_real_model_gives_the_in_memory_vectors_and_top_10(tmp_path):
    data = load_retrieval_data(DEFAULT_DATASET, max_corpus=5000, seed=0)  # the notebook's default
    records = ((d, t) for d, t in stream_corpus(DEFAULT_DATASET) if d in data.corpus)
    first = list(itertools.islice(records, PASSAGES))
    assert len(first) == PASSAGES
    assert all(text == data.corpus[doc_id] for doc_id, text in first)  # the same passages

    encoder = load_encoder(DEFAULT_MODEL, device="cpu")
    streaming = cached(encoder, EmbeddingCache(tmp_path / "cache", chunk_size=CHUNK_SIZE))
    chunk_sizes: list[int] = []

    def counted(chunks):
        for ids, vectors in chunks:
            chunk_sizes.append(len(ids))
            yield ids, vectors

    source = f"{DEFAULT_DATASET.name}: first {PASSAGES} passages"
    streamed = build_index_from_stream(counted(streaming.encode_records(iter(first), source)))
    assert chunk_sizes == [CHUNK_SIZE] * (PASSAGES // CHUNK_SIZE)  # it went in chunks
    ids = [doc_id for doc_id, _ in first]
    assert streamed.doc_ids == ids

    in_memory_vectors = encoder.encode_corpus([text for _, text in first])
    in_memory = build_index(in_memory_vectors, ids)
    streamed_vectors = streamed.index.reconstruct_n(0, streamed.size)
    assert float(np.abs(streamed_vectors - in_memory_vectors).max()) < 1e-5

    query_ids = list(data.queries)
    queries = encoder.encode_queries([data.queries[q] for q in query_ids])
    overlap = top_k_overlap(
        streamed.search_run(query_ids, queries, k=10),
        in_memory.search_run(query_ids, queries, k=10),
        k=10,
    )
    assert overlap == 1.0
