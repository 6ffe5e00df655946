"""Chunks/s of ingestion, single process (load_documents + Chunker + Embedder) against Ray (rag.distributed).

The corpus is SQuAD v1.1 dev paragraphs written as text files, one paragraph a file. Both paths do the same
work: read and parse every file, chunk it, embed every chunk. Start-up is timed apart: the model load for
the single process; ``ray.init`` and, inside the pipeline, each actor's start and model load for Ray. Two
corpus sizes give the marginal rate as well (extra chunks over extra seconds), which leaves the fixed costs out.

    .venv/bin/python eval/experiments/ray_throughput.py [--docs 200 1000] [--benchmarks ../shared/benchmarks]

Timings on a shared machine are noisy: compare the two paths within one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

from rag import Config  # noqa: E402
from rag.chunking import Chunker  # noqa: E402
from rag.distributed import WORKER_ENV, prepare_with_ray  # noqa: E402
from rag.documents import load_documents  # noqa: E402
from rag.embedding import Embedder  # noqa: E402
from rag.index import embedded_text  # noqa: E402

HERE = Path(__file__).resolve()


def write_corpus(benchmarks: Path, n: int, folder: Path) -> Path:
    """The first ``n`` SQuAD v1.1 dev paragraphs, one text file each (the article title as a first line)."""
    data = json.loads((benchmarks / "squad" / "dev-v1.1.json").read_text(encoding="utf-8"))
    paragraphs = [(a["title"].replace("_", " "), p["context"]) for a in data["data"] for p in a["paragraphs"]]
    if n > len(paragraphs):
        raise SystemExit(f"SQuAD dev has {len(paragraphs)} paragraphs; asked for {n}")
    target = folder / f"squad-{n}"
    target.mkdir(parents=True)
    for i, (title, text) in enumerate(paragraphs[:n]):
        (target / f"{i:05d}.txt").write_text(f"{title}\n\n{text}\n", encoding="utf-8")
    return target


def local_run(corpus: Path, config: Config, embedder: Embedder) -> dict:
    started = time.perf_counter()
    docs, _skipped = load_documents([corpus])
    chunker = Chunker.from_config(config)
    texts = [embedded_text(c, d.title, config.embed_headers) for d in docs for c in chunker.chunk(d)]
    parsed = time.perf_counter()
    vectors = embedder.encode(texts)
    done = time.perf_counter()
    return {"docs": len(docs), "chunks": len(texts), "parse_s": parsed - started, "embed_s": done - parsed,
            "total_s": done - started, "vectors": vectors}


def ray_run(corpus: Path, config: Config) -> dict:
    started = time.perf_counter()
    docs, _skipped, prepared = prepare_with_ray([corpus], config)
    done = time.perf_counter()
    chunks = sum(len(e.chunks) for e in prepared.values())
    vectors = np.concatenate([prepared[d.sha256].vectors for d in docs])
    return {"docs": len(docs), "chunks": chunks, "total_s": done - started, "vectors": vectors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, nargs="+", default=[200, 1000], help="corpus sizes (paragraphs)")
    parser.add_argument("--benchmarks", type=Path, default=HERE.parents[3] / "shared" / "benchmarks")
    parser.add_argument("--one-thread", action="store_true",
                        help="also time the single process with torch on one thread (what each Ray actor gets)")
    args = parser.parse_args()
    import ray

    config = Config()
    work = Path(tempfile.mkdtemp(prefix="ray-throughput-"))
    try:
        corpora = {n: write_corpus(args.benchmarks, n, work) for n in args.docs}

        t = time.perf_counter()
        embedder = Embedder(config.model_name, config.embed_dtype, config.embed_batch_size)
        embedder.encode(["warm up"])
        model_s = time.perf_counter() - t
        local = {n: local_run(c, config, embedder) for n, c in corpora.items()}
        one_thread = {}
        if args.one_thread:
            import torch

            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            one_thread = {n: local_run(c, config, embedder) for n, c in corpora.items()}
            torch.set_num_threads(threads)

        t = time.perf_counter()
        # The same cluster prepare_with_ray would start (every CPU), started here so its start is timed apart.
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR", runtime_env={"env_vars": dict(WORKER_ENV)})
        init_s = time.perf_counter() - t
        distributed = {n: ray_run(c, config) for n, c in corpora.items()}
        t = time.perf_counter()
        ray.shutdown()
        shutdown_s = time.perf_counter() - t
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"CPUs: {os.cpu_count()}; embed batch {config.embed_batch_size}; model {config.model_name}")
    print(f"single process: model load {model_s:.1f} s")
    print(f"ray: ray.init (local cluster) {init_s:.1f} s, shutdown {shutdown_s:.1f} s; each run below includes "
          f"starting {os.cpu_count()} actors, each loading the model")
    print(f"{'docs':>6} {'chunks':>7} | {'local s':>8} {'(parse':>7} {'embed)':>7} {'chunks/s':>9} | "
          f"{'ray s':>7} {'chunks/s':>9} {'incl. init':>10} | {'max |diff|':>10}")
    for n in args.docs:
        lo, ra = local[n], distributed[n]
        assert lo["chunks"] == ra["chunks"] and lo["docs"] == ra["docs"], (lo["chunks"], ra["chunks"])
        diff = float(np.abs(lo["vectors"] - ra["vectors"]).max())
        print(f"{n:>6} {lo['chunks']:>7} | {lo['total_s']:>8.1f} {lo['parse_s']:>7.1f} {lo['embed_s']:>7.1f} "
              f"{lo['chunks'] / lo['total_s']:>9.1f} | {ra['total_s']:>7.1f} {ra['chunks'] / ra['total_s']:>9.1f} "
              f"{ra['chunks'] / (ra['total_s'] + init_s):>10.1f} | {diff:>10.2e}")
    for n, run in one_thread.items():
        print(f"single process, torch on 1 thread: {n} docs in {run['total_s']:.1f} s = "
              f"{run['chunks'] / run['total_s']:.1f} chunks/s")
    if len(args.docs) >= 2:
        a, b = min(args.docs), max(args.docs)
        extra = local[b]["chunks"] - local[a]["chunks"]
        lo_rate = extra / (local[b]["total_s"] - local[a]["total_s"])
        ra_rate = extra / (distributed[b]["total_s"] - distributed[a]["total_s"])
        print(f"marginal ({a}->{b} docs, fixed costs cancel): local {lo_rate:.1f} chunks/s, ray {ra_rate:.1f} "
              f"chunks/s (ray/local {ra_rate / lo_rate:.2f}x)")
        if one_thread:
            one_rate = extra / (one_thread[b]["total_s"] - one_thread[a]["total_s"])
            print(f"marginal, single process on 1 thread: {one_rate:.1f} chunks/s")
        fixed = distributed[a]["total_s"] - distributed[a]["chunks"] / ra_rate
        print(f"ray per-run fixed cost (actors start + load the model, pipeline set-up), estimated: {fixed:.1f} s")


if __name__ == "__main__":
    main()
