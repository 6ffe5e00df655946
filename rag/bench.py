"""``rag bench``: measured speed and memory of this machine, not remembered ones."""

from __future__ import annotations

import json
import resource
import statistics
import time
from pathlib import Path
from typing import Any

from .config import Config, project_home
from .embedding import benchmark

#: Used when no gold set is present.
_FALLBACK_QUESTIONS = (
    "How many people may be held in scam centres across Myanmar?",
    "How long do people work each day in scam centres?",
    "Which organisation rescues sex trafficking victims in Myanmar?",
    "What is the capital of Peru?",
)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    pos = (len(ordered) - 1) * q
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _questions() -> list[str]:
    gold = project_home() / "eval" / "gold.jsonl"
    if gold.is_file():
        return [json.loads(line)["question"] for line in gold.read_text(encoding="utf-8").splitlines() if line.strip()]
    return list(_FALLBACK_QUESTIONS)


def reader_benchmark(assistant: Any, questions: list[str], config: Config) -> dict[str, Any]:
    """Reading time per question at each precision, and how often each picks float32's best sentence."""
    from .reader import TrainedReader

    work = []
    for q in questions:
        passages = assistant.retriever.search(q, assistant.embedder.encode_one(q), config.reader_passages)
        work.append((q, passages))
    result: dict[str, Any] = {"passages_per_question": config.reader_passages, "chosen": assistant.reader.info()}
    best: dict[str, list[tuple[int, int]]] = {}
    for precision in ("float32", "bfloat16", "int8"):
        started = time.perf_counter()
        reader = TrainedReader(config.reader_path or None, precision, config.reader_batch_size)
        load = time.perf_counter() - started
        reader.read(*work[0], assistant.documents)  # warm-up
        seconds, picks = [], []
        for q, passages in work:
            t = time.perf_counter()
            readings = reader.read(q, passages, assistant.documents)
            seconds.append(time.perf_counter() - t)
            sentences = [s for r in readings for s in r.sentences]
            top = max(sentences, key=lambda s: s.logit) if sentences else None
            picks.append((top.start, top.end) if top else (-1, -1))
        best[precision] = picks
        result[precision] = {"load_seconds": round(load, 2), "p50": round(statistics.median(seconds), 4),
                             "p95": round(_percentile(seconds, 0.95), 4),
                             "same_best_sentence_as_float32": round(
                                 sum(a == b for a, b in zip(picks, best["float32"])) / len(picks), 4)}
    return result


def run_bench(index_dir: Path | None, config: Config, repeats: int = 2) -> dict[str, Any]:
    from .assistant import Assistant

    started = time.perf_counter()
    assistant = Assistant.load(index_dir, config)
    load_seconds = time.perf_counter() - started
    texts = [c.text for c in assistant.index.chunks][:256]
    result: dict[str, Any] = {"index": str(assistant.index.path), "load_seconds": round(load_seconds, 2),
                              "embedding": benchmark(texts, config.model_name, config.embed_batch_size, repeats)}
    questions = _questions()
    # "first_stage": retrieval without the reader; "retrieve": with the reader reranking; "ask": the whole
    # answer. Nothing is cached between questions, so every question is as cold as a first one (the
    # process has loaded its models once, as a server has).
    timings: dict[str, list[float]] = {"first_stage": [], "retrieve": [], "ask": []}
    for q in questions:
        t = time.perf_counter()
        assistant.retriever.search(q, assistant.embedder.encode_one(q), config.top_k)
        timings["first_stage"].append(time.perf_counter() - t)
        t = time.perf_counter()
        assistant.retrieve(q)
        timings["retrieve"].append(time.perf_counter() - t)
        t = time.perf_counter()
        assistant.ask(q)
        timings["ask"].append(time.perf_counter() - t)
    for name, values in timings.items():
        result[f"{name}_latency"] = {"n": len(values), "p50": round(statistics.median(values), 4),
                                     "p95": round(_percentile(values, 0.95), 4), "max": round(max(values), 4)}
    result["reader"] = reader_benchmark(assistant, questions, config)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result
