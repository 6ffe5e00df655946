"""Time and peak memory of a full BM25 build over an index's stored terms: rag.lexical against bm25s.

Each build runs in its own process (peak RSS is per process), over the terms the index's chunk store keeps:

    .venv/bin/python eval/experiments/bm25_build.py INDEX_DIR          # e.g. one kept by rag bench --scale --out

``ours``: ``BM25Index.from_terms`` streaming the terms from the store (what an ingest that cannot update BM25
does). ``bm25s``: the terms read into lists (one string per distinct term), then ``bm25s.BM25.index``, as the
index was built before BM25 kept its term frequencies. The two give bit-identical scores (tests/test_lexical.py).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def _build(folder: Path, which: str) -> dict[str, float]:
    from rag.lexical import BM25Index
    from rag.store import ChunkStore

    store = ChunkStore(folder / ChunkStore.FILE)
    started = time.perf_counter()
    if which == "ours":
        BM25Index.from_terms((text.split() for _id, text in store.iter_terms()), 1.2, 0.75, store.chunk_ids())
    else:
        import bm25s

        shared: dict[str, str] = {}
        terms = [[shared.setdefault(t, t) for t in text.split()] for _id, text in store.iter_terms()]
        bm25s.BM25(k1=1.2, b=0.75).index(terms, show_progress=False)
    return {"seconds": round(time.perf_counter() - started, 1),
            "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("index", type=Path, help="an index folder (holding store.sqlite3)")
    parser.add_argument("--only", choices=("ours", "bm25s"), help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.only:
        print(json.dumps(_build(args.index, args.only)))
        return
    for which in ("ours", "bm25s"):
        run = subprocess.run([sys.executable, __file__, str(args.index), "--only", which],
                             capture_output=True, text=True, check=True)
        print(which, run.stdout.strip())


if __name__ == "__main__":
    main()
