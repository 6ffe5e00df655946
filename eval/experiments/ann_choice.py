"""Which FAISS index above which size (issue 12, item 1): exact Flat vs IVF with SQ8 / SQfp16 / PQ codes.

Run: ``.venv/bin/python -m eval.experiments.ann_choice [--sizes 10000,30000,100000,300000,1000000]``
(about an hour on 2 cores at the default sizes; the first run also embeds the 20,000 base passages, ~10 min).

Vectors. 384-d all-MiniLM-L6-v2 embeddings of 20,000 real passages (SQuAD v1.1 train paragraphs cut by the
project's chunker, headed by their title as ``embedded_text`` does; ``rag.scale.base_passages``), cached in
``embeddings/.scale-cache/``. N vectors are made from that base by ``rag.scale.variant_vectors``:
``v = normalise(a * base[i % 20000] + b * g)``, ``g`` ~ Gaussian with the base's mean and covariance, a = b = 1.
Why this generator: copies of the base with tiny noise would form tight clusters of near-duplicates, and an
IVF index finds a whole cluster by probing one list, so recall would look better than on a real corpus;
isotropic noise would leave the cone real embeddings live in and make every vector equally far from all
others (harder than real, and IVF's clusters meaningless). Noise shaped like the base keeps the geometry:
the script prints, for a few (a, b), a variant's cosine to its base, and the nearest-neighbour score
distribution (top-1 and 10th score of each vector among the others, and of real queries) of the base itself
and of generated sets, so the choice can be checked. a = b = 1 gives a cosine to the base of ~0.75 and
nearest-neighbour scores a little *below* the real base's: the synthetic corpus is, if anything, harder.
Queries: real SQuAD train questions, embedded (not in the corpus): 500 for recall, 200 single-query timings.

Measured per configuration: train + add time (coarse k-means, assignment, code training, adding with ids and
a hashtable direct map so ids can be removed and reconstructed, as the index needs), serialised size,
single-query (batch of 1, like the server) p50/p95 in ms, recall@10 against exact search (mean overlap of
the top 10). faiss uses 2 threads. HNSW is a reference only: it cannot remove ids. IVF configurations
sharing an nlist share one trained coarse quantizer and one assignment (their times are added to each).
The machine is shared with other jobs: compare timings within one run only. Single queries are timed with
faiss on 2 OpenMP threads and on 1: on a loaded machine (more runnable threads than cores) a 2-thread
parallel region waits for a descheduled thread at its barrier, which made one exact 10k search 0.3 ms on
1 thread and ~85 ms on 2 (measured here, load average ~15).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import faiss
import numpy as np

from rag.config import Config
from rag.scale import (base_matrix, base_passages, question_matrix, squad_questions, variant_vectors)

THREADS = 2
K = 10


def log(*args) -> None:
    print(*args, flush=True, file=sys.stderr)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[f >= 0]) & set(t)) / K for f, t in zip(found, truth)]))


def single_query_ms(index, queries: np.ndarray) -> dict[str, float]:
    """p50/p95 of one query at a time, with faiss on 2 OpenMP threads and on 1 (see the note in main)."""
    out = {}
    for threads, suffix in ((THREADS, ""), (1, "_1t")):
        faiss.omp_set_num_threads(threads)
        for q in queries[:5]:  # warm-up
            index.search(q[None], K)
        times = []
        for q in queries:
            t = time.perf_counter()
            index.search(q[None], K)
            times.append((time.perf_counter() - t) * 1e3)
        out[f"p50_ms{suffix}"] = round(statistics.median(times), 2)
        out[f"p95_ms{suffix}"] = round(pct(times, 0.95), 2)
    faiss.omp_set_num_threads(THREADS)
    return out


def nn_profile(x: np.ndarray, queries: np.ndarray, sample: int = 2000, seed: int = 0) -> dict:
    """Top-1 and 10th neighbour scores of a sample of rows among the others, and of the queries."""
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    rows = np.random.default_rng(seed).choice(len(x), min(sample, len(x)), replace=False)
    s, _ = index.search(x[rows], K + 1)  # column 0 is the row itself
    qs, _ = index.search(queries, K)
    r = lambda v: [round(float(np.percentile(v, p)), 3) for p in (10, 50, 90)]
    return {"nn1 p10/50/90": r(s[:, 1]), "nn10 p10/50/90": r(s[:, K]),
            "query top1 p10/50/90": r(qs[:, 0]), "query top10 p10/50/90": r(qs[:, K - 1])}


def generator_check(base: np.ndarray, queries: np.ndarray) -> dict:
    out = {"base (real)": nn_profile(base, queries)}
    log(f"generator: real base: {out['base (real)']}")
    for a, b in ((1.0, 0.75), (1.0, 1.0), (1.0, 1.25)):
        n = 5 * len(base)  # 5 variants per base passage, like a 100k corpus from a 20k base
        x = variant_vectors(base, n, seed=1, a=a, b=b)
        cos = float(np.mean(np.sum(x[:len(base)] * base, axis=1)))
        out[f"a={a} b={b}"] = {"cos to base": round(cos, 3), **nn_profile(x, queries)}
        log(f"generator a={a} b={b}: {out[f'a={a} b={b}']}")
    return out


def serialized_mb(index) -> float:
    return faiss.serialize_index(index).nbytes / 2**20


def nlists_for(n: int) -> list[int]:
    """2, 4 and 8 x sqrt(N) cells; above 300k only 2 and 4 (k-means over 8·sqrt(N) cells takes too long here)."""
    r = math.sqrt(n)
    factors = (2, 4, 8) if n <= 300_000 else (2, 4)
    return sorted({max(16, int(round(f * r))) for f in factors})


def ivf_configs(x: np.ndarray, queries_r: np.ndarray, queries_t: np.ndarray, truth: np.ndarray,
                nprobes: list[int], encodings: list[str], rows: list[dict], n: int) -> None:
    d = x.shape[1]
    ids = np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(0)
    for nlist in nlists_for(n):
        if nlist * 39 > n:
            continue
        # Like rag.vectorstore: a sample of at least 100k (Config.ivf_training_sample), 39 points a cell or more.
        train_n = min(n, max(100_000, 39 * nlist))
        sample = x[rng.choice(n, train_n, replace=False)] if train_n < n else x
        t = time.perf_counter()
        km = faiss.Kmeans(d, nlist, niter=20, seed=1, spherical=False, max_points_per_centroid=256)
        km.train(sample)
        quantizer = faiss.IndexFlatIP(d)
        quantizer.add(km.centroids)
        _, assign = quantizer.search(x, 1)
        assign = np.ascontiguousarray(assign[:, 0])
        coarse = time.perf_counter() - t
        log(f"  N={n} nlist={nlist}: coarse train on {train_n} + assign {coarse:.1f}s")
        for enc in encodings:
            t = time.perf_counter()
            if enc.startswith("SQ"):
                qtype = {"SQ8": faiss.ScalarQuantizer.QT_8bit, "SQfp16": faiss.ScalarQuantizer.QT_fp16}[enc]
                index = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, qtype, faiss.METRIC_INNER_PRODUCT)
            else:
                m = int(enc[2:])
                index = faiss.IndexIVFPQ(quantizer, d, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
            index.own_fields = False
            # The quantizer is trained: only the codes train (PQ on 16k points: 64 per code word, as k-means
            # over 65k took minutes per configuration here).
            index.train(sample[: min(len(sample), 16_384 if enc.startswith("PQ") else 65_536)])
            index.set_direct_map_type(faiss.DirectMap.Hashtable)
            index.add_core(n, faiss.swig_ptr(x), faiss.swig_ptr(ids), faiss.swig_ptr(assign))
            build = coarse + time.perf_counter() - t
            size = serialized_mb(index)
            factory = f"IVF{nlist},{enc}"
            for nprobe in nprobes:
                if nprobe > nlist:
                    continue
                index.nprobe = nprobe
                _, found = index.search(queries_r, K)
                rows.append({"n": n, "index": factory, "nprobe": nprobe, "build_s": round(build, 1),
                             "mb": round(size, 1), **single_query_ms(index, queries_t),
                             "recall10": round(recall(found, truth), 4)})
                log(f"    {factory} nprobe={nprobe}: {rows[-1]}")
            del index


def run(sizes: list[int], nprobes: list[int], encodings: list[str], hnsw_max: int, out: Path) -> dict:
    faiss.omp_set_num_threads(THREADS)
    config = Config()
    base = base_matrix(config, base_passages(config), progress=True)
    questions = question_matrix(config, squad_questions())
    queries_r, queries_t = questions[:500], questions[500:700]
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpu": platform.processor() or cpu_model(),
              "faiss": faiss.__version__, "threads": THREADS, "base": base.shape[0],
              "generator": generator_check(base, questions[:500]), "rows": []}
    rows = result["rows"]
    for n in sizes:
        x = variant_vectors(base, n, seed=n)
        t = time.perf_counter()
        flat = faiss.IndexIDMap2(faiss.IndexFlatIP(x.shape[1]))
        flat.add_with_ids(x, np.arange(n, dtype=np.int64))
        build = time.perf_counter() - t
        _, truth = flat.search(queries_r, K)
        rows.append({"n": n, "index": "IDMap2,Flat", "nprobe": None, "build_s": round(build, 1),
                     "mb": round(serialized_mb(flat), 1), **single_query_ms(flat, queries_t), "recall10": 1.0})
        log(f"N={n} flat: {rows[-1]}")
        del flat
        ivf_configs(x, queries_r, queries_t, truth, nprobes, encodings, rows, n)
        if n <= hnsw_max:
            t = time.perf_counter()
            hnsw = faiss.IndexHNSWFlat(x.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
            hnsw.hnsw.efConstruction = 80
            hnsw.add(x)
            build = time.perf_counter() - t
            size = serialized_mb(hnsw)
            for ef in (32, 64, 128):
                hnsw.hnsw.efSearch = ef
                _, found = hnsw.search(queries_r, K)
                rows.append({"n": n, "index": "HNSW32 (no remove)", "nprobe": f"ef{ef}", "build_s": round(build, 1),
                             "mb": round(size, 1), **single_query_ms(hnsw, queries_t),
                             "recall10": round(recall(found, truth), 4)})
                log(f"    {rows[-1]}")
            del hnsw
        del x
        out.write_text(json.dumps(result, indent=1))  # after every size: a long run keeps what it measured
    return result


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def markdown(result: dict) -> str:
    lines = [f"faiss {result['faiss']}, {result['threads']} threads, {result['cpu']}, {result['date']}; "
             f"base {result['base']} real passages", "",
             "| N | index | nprobe | train+add s | MB | p50 ms | p95 ms | p50 ms 1 thread | p95 ms 1 thread "
             "| recall@10 |", "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['n']:,} | {r['index']} | {r['nprobe'] if r['nprobe'] is not None else '—'} | "
                     f"{r['build_s']} | {r['mb']} | {r['p50_ms']} | {r['p95_ms']} | {r['p50_ms_1t']} | {r['p95_ms_1t']} | "
                     f"{r['recall10']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,30000,100000,300000,1000000")
    parser.add_argument("--nprobes", default="4,8,16,32,64,128")
    parser.add_argument("--encodings", default="SQ8,SQfp16,PQ96")
    parser.add_argument("--hnsw-max", type=int, default=300_000, help="HNSW reference up to this N")
    parser.add_argument("--out", type=Path, default=Path("/tmp/h/ann_choice.json"))
    args = parser.parse_args()
    result = run([int(s) for s in args.sizes.split(",")], [int(s) for s in args.nprobes.split(",")],
                 args.encodings.split(","), args.hnsw_max, args.out)
    print(markdown(result))


if __name__ == "__main__":
    main()
