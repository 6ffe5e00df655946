"""Comparison of two runs' metrics, and the --set parser."""

from __future__ import annotations

import pytest

from eval.cli import parse_overrides
from eval.report import compare, flatten, lookup
from rag import ConfigError, InputError


def _metrics(sha: str, mrr: float, p50: float) -> dict:
    return {"format": "gold", "dataset_sha256": sha, "k": 10, "limit": None,
            "summary": {"hybrid": {"retrieval": {"mrr@10": mrr, "questions": 100},
                                   "latency_ms": {"ask": {"p50": p50}}}}}


def test_flatten_and_lookup():
    data = {"a": {"b": 1, "c": {"d": 2.5}, "e": None, "f": True, "g": "x"}}
    assert flatten(data) == {"a.b": 1.0, "a.c.d": 2.5}
    assert lookup(data, "a.c.d") == 2.5 and lookup(data, "a.zz") is None


def test_compare_deltas_and_notes():
    deltas, notes = compare(_metrics("s1", 0.75, 100.0), _metrics("s1", 0.5, 120.0))
    by_key = {d.key: d for d in deltas}
    assert by_key["hybrid.retrieval.mrr@10"].delta == pytest.approx(0.25)
    assert by_key["hybrid.latency_ms.ask.p50"].delta == pytest.approx(-20.0)
    assert by_key["hybrid.retrieval.questions"].delta == 0
    assert notes == []
    _, notes = compare(_metrics("s2", 0.75, 100.0), _metrics("s1", 0.5, 120.0))
    assert any("dataset differs" in n for n in notes)
    with pytest.raises(InputError, match="cannot compare a gold run with a beir run"):
        compare(_metrics("s1", 0.5, 1.0), {**_metrics("s1", 0.5, 1.0), "format": "beir"})


def test_parse_overrides_types():
    assert parse_overrides(["top_k=5", "dense_weight=0.3", "embed_headers=false", "fusion=weighted",
                            "allowed_extensions=.txt,.md"]) == {
        "top_k": 5, "dense_weight": 0.3, "embed_headers": False, "fusion": "weighted",
        "allowed_extensions": (".txt", ".md")}
    with pytest.raises(ConfigError, match="top_k=five"):
        parse_overrides(["top_k=five"])
    with pytest.raises(ConfigError, match="expected true or false"):
        parse_overrides(["embed_headers=maybe"])
