"""Metric code against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from eval.metrics import (answer_tokens, best_f1, contains_answer, dcg, dedupe_ranking, exact_match,
                          first_relevant_rank, hit_at_k, latency_summary, mean, ndcg_at_k, normalize_answer,
                          overlaps, percentile, recall_at_k, reciprocal_rank, strip_citation_marks, token_f1,
                          trec_scores)


def test_overlap_is_half_open():
    assert overlaps(0, 5, 4, 9)
    assert overlaps(4, 9, 0, 5)
    assert overlaps(0, 10, 3, 4)  # containment
    assert not overlaps(0, 5, 5, 9)  # touching spans share no character
    assert not overlaps(5, 9, 0, 5)


def test_hits_and_reciprocal_rank():
    rel = [False, False, True, False, True]
    assert first_relevant_rank(rel) == 3
    assert first_relevant_rank(rel, 2) is None
    assert hit_at_k(rel, 1) == 0.0 and hit_at_k(rel, 2) == 0.0 and hit_at_k(rel, 3) == 1.0
    assert reciprocal_rank(rel, 10) == pytest.approx(1 / 3)
    assert reciprocal_rank(rel, 2) == 0.0
    assert reciprocal_rank([], 10) == 0.0


def test_ndcg_binary_hand_computed():
    # Relevant at ranks 2 and 4, two relevant items exist:
    # DCG = 1/log2(3) + 1/log2(5) = 0.630930 + 0.430677 = 1.061606
    # IDCG = 1/log2(2) + 1/log2(3) = 1.630930  ->  nDCG = 0.650920
    assert dcg([0, 1, 0, 1], 10) == pytest.approx(1.061606, abs=1e-6)
    assert ndcg_at_k([0, 1, 0, 1], [1, 1], 10) == pytest.approx(0.650920, abs=1e-6)
    # A third relevant item that was never retrieved lowers it: IDCG = 1 + 0.630930 + 0.5 = 2.130930
    assert ndcg_at_k([0, 1, 0, 1], [1, 1, 1], 10) == pytest.approx(1.061606 / 2.130930, abs=1e-6)
    assert ndcg_at_k([1, 1], [1, 1], 10) == pytest.approx(1.0)
    assert ndcg_at_k([0, 0], [], 10) == 0.0


def test_ndcg_graded_linear_gain_like_trec_eval():
    # Ranking a(2), x(0), c(1); judged a=2, b=1, c=1.
    # DCG = 2/1 + 0 + 1/log2(4) = 2.5 ; IDCG = 2/1 + 1/log2(3) + 1/log2(4) = 3.130930
    qrels = {"a": 2, "b": 1, "c": 1}
    scores = trec_scores(["a", "x", "c"], qrels, cutoffs=(1, 10))
    assert scores["ndcg@10"] == pytest.approx(2.5 / 3.130930, abs=1e-6)
    assert scores["mrr@10"] == 1.0
    assert scores["recall@1"] == pytest.approx(1 / 3)
    assert scores["recall@10"] == pytest.approx(2 / 3)
    assert scores["hit@1"] == 1.0


def test_ndcg_cutoff_and_zero_grades():
    # Only the top 10 count; a judged grade of 0 is not relevant.
    ranking = [f"n{i}" for i in range(10)] + ["r"]
    assert trec_scores(ranking, {"r": 1, "n0": 0})["ndcg@10"] == 0.0
    assert trec_scores(ranking, {"r": 1}, cutoffs=(100,))["recall@100"] == 1.0
    assert trec_scores(["n0", "r"], {"r": 1})["mrr@10"] == 0.5
    assert recall_at_k(["a"], {"a": 0}, 10) == 0.0


def test_ndcg_discount_is_log2_rank_plus_one():
    # One relevant item at rank r: nDCG = 1 / log2(r + 1).
    for r in range(1, 11):
        gains = [0] * (r - 1) + [1]
        assert ndcg_at_k(gains, [1], 10) == pytest.approx(1 / math.log2(r + 1))


def test_dedupe_ranking_keeps_first_passage_rank():
    assert dedupe_ranking(["d2", "d1", "d2", "d3", "d1"]) == ["d2", "d1", "d3"]


def test_squad_normalisation():
    assert normalize_answer("The  Cat!") == "cat"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert normalize_answer("“Thailand”") == "thailand"
    assert normalize_answer("1,200 people") == "1200 people"
    assert normalize_answer("2023\u2014the year") == "2023 year"
    assert normalize_answer("wildlife trade.\u00b2") == "wildlife trade"
    assert answer_tokens("Theatre of the Absurd") == ["theatre", "of", "absurd"]


def test_token_f1_hand_computed():
    # pred tokens: cat sat on mat ; gold: cat on mat -> P = 3/4, R = 1, F1 = 6/7
    assert token_f1("the cat sat on the mat", "cat on mat") == pytest.approx(6 / 7)
    assert token_f1("dog", "cat") == 0.0
    assert token_f1("cat cat", "cat") == pytest.approx(2 * 0.5 * 1 / 1.5)  # repeated tokens count once
    assert best_f1("cat on mat", ["dog", "the cat on the mat"]) == 1.0
    assert best_f1("anything", []) == 0.0
    assert exact_match("The Cat.", ["cat"]) == 1.0
    assert exact_match("a cat sat", ["cat"]) == 0.0


def test_answer_hit_needs_whole_tokens():
    assert contains_answer("nationals of more than 46 countries", ["46"]) == 1.0
    assert contains_answer("some 146 people", ["46"]) == 0.0
    assert contains_answer("at least 120,000 people [1]", ["120,000"]) == 1.0
    assert contains_answer("the Green Bay Packers won", ["Green Bay Packers", "Packers"]) == 1.0
    assert contains_answer("Green and Bay", ["Green Bay"]) == 0.0
    assert contains_answer("", ["x"]) == 0.0


def test_strip_citation_marks():
    assert strip_citation_marks("First part. [1] \u2026second part [2]") == "First part.  second part"
    assert contains_answer(strip_citation_marks("Only 3 [1]"), ["1"]) == 0.0


def test_mean_and_percentiles():
    assert mean([1, None, 3]) == 2.0
    assert mean([None]) is None
    assert percentile([4, 1, 3, 2], 0.5) == pytest.approx(2.5)
    assert percentile([1, 2, 3, 4], 0.95) == pytest.approx(3.85)
    assert percentile([7], 0.95) == 7
    assert percentile([], 0.5) is None
    with pytest.raises(ValueError):
        percentile([1], 1.5)
    summary = latency_summary([0.010, 0.020, 0.030])
    assert summary["n"] == 3 and summary["p50"] == 20.0 and summary["max"] == 30.0
    assert summary["p95"] == pytest.approx(29.0)
