"""Metric code shared by the gold set and the public benchmarks.

Everything here is a pure function of its arguments (no model, no index), so
each definition can be checked against a hand-computed case in the tests.

Ranking metrics follow the usual trec_eval definitions:

* ``hit@k``: 1 when at least one relevant item is in the top ``k``.
* ``MRR@k``: 1 / rank of the first relevant item in the top ``k`` (0 if none).
* ``nDCG@k``: DCG@k / IDCG@k with linear gains (the relevance grade itself,
  as trec_eval's ``ndcg_cut`` and BEIR do) and discount ``log2(rank + 1)``;
  IDCG is the DCG of the judged relevant items sorted by grade.
* ``recall@k``: relevant items in the top ``k`` / all relevant items (grade > 0).

Answer metrics follow the SQuAD evaluation script: answers are normalised
(lower case, punctuation and the articles a/an/the removed, whitespace
collapsed) before token F1 is computed; "answer hit" asks whether a gold
answer's normalised tokens occur as a contiguous run in the prediction's.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter
from typing import Hashable, Iterable, Mapping, Sequence

# ---------------------------------------------------------------------- spans


def overlaps(a_start: int, a_end: int, b_start: int, b_end: int) -> bool:
    """True when the half-open spans [a_start, a_end) and [b_start, b_end) share a character."""
    return a_start < b_end and b_start < a_end


# ---------------------------------------------------------------------- ranking


def first_relevant_rank(relevance: Sequence[bool | float], k: int | None = None) -> int | None:
    """1-based rank of the first relevant item (grade > 0) within the top ``k``; None if there is none."""
    for rank, rel in enumerate(relevance[:k] if k is not None else relevance, start=1):
        if rel and rel > 0:
            return rank
    return None


def hit_at_k(relevance: Sequence[bool | float], k: int) -> float:
    """1.0 when a relevant item is in the top ``k``, else 0.0."""
    return 1.0 if first_relevant_rank(relevance, k) is not None else 0.0


def reciprocal_rank(relevance: Sequence[bool | float], k: int = 10) -> float:
    """1 / rank of the first relevant item in the top ``k`` (0.0 when none)."""
    rank = first_relevant_rank(relevance, k)
    return 0.0 if rank is None else 1.0 / rank


def dcg(gains: Sequence[float], k: int) -> float:
    """Discounted cumulative gain of the first ``k`` gains: sum of gain / log2(rank + 1)."""
    return sum(float(g) / math.log2(rank + 1) for rank, g in enumerate(gains[:k], start=1) if g > 0)


def ndcg_at_k(gains: Sequence[float], ideal_gains: Iterable[float], k: int = 10) -> float:
    """nDCG@k of a ranking whose items have ``gains``, against all judged ``ideal_gains`` (any order)."""
    ideal = sorted((float(g) for g in ideal_gains if g > 0), reverse=True)
    best = dcg(ideal, k)
    return 0.0 if best <= 0 else dcg(gains, k) / best


def recall_at_k(ranked_ids: Sequence[Hashable], qrels: Mapping[Hashable, float], k: int) -> float:
    """Share of the relevant ids (grade > 0) found in the top ``k`` of ``ranked_ids``."""
    relevant = {d for d, grade in qrels.items() if grade > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked_ids[:k])) / len(relevant)


def trec_scores(ranked_ids: Sequence[Hashable], qrels: Mapping[Hashable, float],
                cutoffs: Sequence[int] = (10, 100)) -> dict[str, float]:
    """nDCG@10, MRR@10, and recall@k and hit@k for each cutoff, for one query against graded qrels."""
    gains = [max(float(qrels.get(d, 0)), 0.0) for d in ranked_ids]
    scores = {"ndcg@10": ndcg_at_k(gains, qrels.values(), 10), "mrr@10": reciprocal_rank(gains, 10)}
    for k in cutoffs:
        scores[f"recall@{k}"] = recall_at_k(ranked_ids, qrels, k)
        scores[f"hit@{k}"] = hit_at_k(gains, k)
    return scores


def auc(positives: Sequence[float], negatives: Sequence[float]) -> float | None:
    """ROC AUC: the probability that a random positive scores above a random negative (ties count half)."""
    if not len(positives) or not len(negatives):
        return None
    import numpy as np

    pos = np.asarray(positives, dtype=float)[:, None]
    neg = np.asarray(negatives, dtype=float)[None, :]
    return round(float((pos > neg).mean() + 0.5 * (pos == neg).mean()), 4)


def dedupe_ranking(ids: Iterable[Hashable]) -> list[Hashable]:
    """Ids in order of first appearance: a document's rank is the rank of its first passage."""
    seen: set[Hashable] = set()
    ranked = []
    for i in ids:
        if i not in seen:
            seen.add(i)
            ranked.append(i)
    return ranked


# ---------------------------------------------------------------------- answers

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)
#: Superscript footnote markers ("trade.²") are not part of any word.
_FOOTNOTE_MARKS = str.maketrans({ch: " " for ch in "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079"})
_DASHES = frozenset("\u2012\u2013\u2014\u2015")
_CITATION_MARK = re.compile(r"\s*\[\d+\]")


def _is_punctuation(ch: str) -> bool:
    return ch in _PUNCTUATION or unicodedata.category(ch).startswith("P")


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces.

    Unicode punctuation (curly quotes, dashes) is removed as well as ASCII, so
    "“Thailand”" and "Thailand" normalise alike, and superscript footnote
    markers ("trade.²") are dropped.
    """
    text = text.lower().translate(_FOOTNOTE_MARKS)
    # Long dashes separate words ("2023\u2014the"); other punctuation is dropped as in SQuAD.
    text = "".join(" " if ch in _DASHES else ch for ch in text if ch in _DASHES or not _is_punctuation(ch))
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def answer_tokens(text: str) -> list[str]:
    return normalize_answer(text).split()


def strip_citation_marks(text: str) -> str:
    """An answer's text without its ``[n]`` citation markers and ellipses."""
    return _CITATION_MARK.sub("", text).replace("\u2026", " ").strip()


def token_f1(prediction: str, truth: str) -> float:
    """SQuAD token F1 between a prediction and one gold answer."""
    pred, gold = answer_tokens(prediction), answer_tokens(truth)
    if not pred or not gold:
        return float(pred == gold)
    common = Counter(pred) & Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def best_f1(prediction: str, answers: Sequence[str]) -> float:
    """Token F1 against the best-matching accepted answer (0.0 when there is none)."""
    return max((token_f1(prediction, a) for a in answers), default=0.0)


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals a normalised accepted answer."""
    pred = normalize_answer(prediction)
    return 1.0 if any(pred == normalize_answer(a) for a in answers) else 0.0


def contains_answer(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when some accepted answer's normalised tokens occur as a contiguous run in the prediction's."""
    pred = answer_tokens(prediction)
    for answer in answers:
        gold = answer_tokens(answer)
        if gold and any(pred[i:i + len(gold)] == gold for i in range(len(pred) - len(gold) + 1)):
            return 1.0
    return 0.0


def word_count(text: str) -> int:
    return len(text.split())


# ---------------------------------------------------------------------- aggregates


def mean(values: Iterable[float | None]) -> float | None:
    """Mean of the values that are not None (None when there are none)."""
    kept = [float(v) for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-quantile (0..1) with linear interpolation between order statistics (numpy's default)."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be between 0 and 1, got {q}")
    ordered = sorted(values)
    if not ordered:
        return None
    pos = (len(ordered) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def latency_summary(seconds: Sequence[float]) -> dict[str, float | None]:
    """p50, p95, mean and max of latencies given in seconds, reported in milliseconds."""
    if not seconds:
        return {"n": 0, "p50": None, "p95": None, "mean": None, "max": None}
    ms = [s * 1000.0 for s in seconds]
    return {"n": len(ms), "p50": round(percentile(ms, 0.5), 2), "p95": round(percentile(ms, 0.95), 2),
            "mean": round(sum(ms) / len(ms), 2), "max": round(max(ms), 2)}
