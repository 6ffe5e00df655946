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


def run_bench(index_dir: Path | None, config: Config, repeats: int = 2) -> dict[str, Any]:
    from .assistant import Assistant

    started = time.perf_counter()
    assistant = Assistant.load(index_dir, config)
    load_seconds = time.perf_counter() - started
    texts = [c.text for c in assistant.index.chunks][:256]
    result: dict[str, Any] = {"index": str(assistant.index.path), "load_seconds": round(load_seconds, 2),
                              "embedding": benchmark(texts, config.model_name, config.embed_batch_size, repeats)}
    questions = _questions()
    # "ask": one session asking the questions in turn (sentence embeddings cached as configured);
    # "ask_cold": no cache, so every question embeds its candidate sentences, as a first question does.
    cold = Assistant(assistant.index, config.replace(sentence_cache_size=0), assistant.embedder)
    timings: dict[str, list[float]] = {"retrieve": [], "ask": [], "ask_cold": []}
    for q in questions:
        t = time.perf_counter()
        assistant.retrieve(q)
        timings["retrieve"].append(time.perf_counter() - t)
        t = time.perf_counter()
        assistant.ask(q)
        timings["ask"].append(time.perf_counter() - t)
        t = time.perf_counter()
        cold.ask(q)
        timings["ask_cold"].append(time.perf_counter() - t)
    for name, values in timings.items():
        result[f"{name}_latency"] = {"n": len(values), "p50": round(statistics.median(values), 4),
                                     "p95": round(_percentile(values, 0.95), 4), "max": round(max(values), 4)}
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result
