"""``rag eval GOLD --fit-abstention``: fit the abstention model on data, with cross-validation.

The assistant abstains when a logistic model over the evidence features of
its best answer (``rag.answer.FEATURES``) says the passages probably do not
answer the question. This module collects those features and fits the model:

* from the gold set: answerable questions are positives, unanswerable ones negatives;
* optionally from SQuAD (``--squad FILE``), to have more data than the gold
  set alone: each sampled question is asked once against the whole index
  (positive) and once with its own article filtered out (a realistic negative:
  the topic is close but the answer is gone).

Scores are estimated out of fold (gold items one by one in K folds, SQuAD
questions grouped by article), and the threshold is the largest one that
keeps wrongly abstained gold answerable questions at or under the target rate.
Nothing is written into the configuration: the coefficients are printed for a
person to review and paste into ``rag.Config.abstain_coefficients``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from rag import Assistant
from rag.answer import FEATURES

from .gold import GoldSet

log = logging.getLogger(__name__)

#: Highest share of answerable gold questions that may be wrongly abstained (the project's target).
MAX_WRONG_ABSTENTION = 0.04
FOLDS = 5


@dataclass(frozen=True)
class Row:
    source: str  # "gold" or "squad"
    group: str  # CV group: gold item id, or SQuAD article
    label: int  # 1 = the documents answer it
    features: tuple[float, ...]


def _features(assistant: Assistant, question: str, doc_ids: Sequence[str] | None = None) -> tuple[float, ...]:
    answer = assistant.ask(question, doc_ids=doc_ids)
    return tuple(float(answer.features.get(name, 0.0)) for name in FEATURES)


def gold_rows(assistant: Assistant, gold: GoldSet, progress: Any = None) -> list[Row]:
    rows = []
    for item in gold.items:
        rows.append(Row("gold", item.id, int(item.answerable), _features(assistant, item.question)))
        if progress is not None:
            progress.update()
    return rows


def squad_rows(assistant: Assistant, questions: Sequence[Any], progress: Any = None,
               unanswerable: Sequence[Any] = ()) -> list[Row]:
    """Each answerable question twice: with its own article (positive) and without it (negative); each
    SQuAD 2.0 unanswerable question once, over the whole corpus (negative: its own paragraph is there but
    does not answer it)."""
    all_ids = list(assistant.documents)
    rows = []
    for q in questions:
        article = q.doc_id.split("-")[0]
        others = [d for d in all_ids if not d.startswith(article + "-")]
        rows.append(Row("squad", article, 1, _features(assistant, q.question)))
        rows.append(Row("squad", article, 0, _features(assistant, q.question, others)))
        if progress is not None:
            progress.update()
    for q in unanswerable:
        rows.append(Row("squad", q.doc_id.split("-")[0], 0, _features(assistant, q.question)))
        if progress is not None:
            progress.update()
    return rows


def _fit(X: np.ndarray, y: np.ndarray, w: np.ndarray):
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1.0, max_iter=2000)
    model.fit(X, y, sample_weight=w)
    return model


def _weights(rows: Sequence[Row]) -> np.ndarray:
    """Each source and class weighs the same in total, so SQuAD's many rows do not drown the gold set."""
    keys = [(r.source, r.label) for r in rows]
    counts = {k: keys.count(k) for k in set(keys)}
    return np.asarray([1.0 / counts[k] for k in keys]) * len(rows) / len(counts)


def out_of_fold(rows: Sequence[Row], folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """Out-of-fold probabilities; every group lands in exactly one test fold."""
    groups = sorted({(r.source, r.group) for r in rows})
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(groups))
    fold_of = {groups[i]: n % folds for n, i in enumerate(order)}
    X = np.asarray([r.features for r in rows])
    y = np.asarray([r.label for r in rows])
    w = _weights(rows)
    fold = np.asarray([fold_of[(r.source, r.group)] for r in rows])
    p = np.zeros(len(rows))
    for f in range(folds):
        test = fold == f
        model = _fit(X[~test], y[~test], w[~test])
        p[test] = model.predict_proba(X[test])[:, 1]
    return p


def choose_threshold(p: np.ndarray, rows: Sequence[Row], max_wrong: float = MAX_WRONG_ABSTENTION) -> float:
    """The largest threshold keeping wrongly abstained gold answerable questions at or under ``max_wrong``."""
    gold_pos = np.asarray([pi for pi, r in zip(p, rows) if r.source == "gold" and r.label == 1])
    if not len(gold_pos):
        gold_pos = np.asarray([pi for pi, r in zip(p, rows) if r.label == 1])
    best = 0.0
    for t in np.linspace(0.0, 1.0, 1001):
        if (gold_pos < t).mean() <= max_wrong:
            best = float(t)
    return round(best, 3)


def rates(p: np.ndarray, rows: Sequence[Row], threshold: float, source: str) -> dict[str, float | None]:
    pos = [pi for pi, r in zip(p, rows) if r.source == source and r.label == 1]
    neg = [pi for pi, r in zip(p, rows) if r.source == source and r.label == 0]
    return {"answerable": len(pos), "unanswerable": len(neg),
            "answerable_abstained": round(float(np.mean(np.asarray(pos) < threshold)), 4) if pos else None,
            "unanswerable_abstained": round(float(np.mean(np.asarray(neg) < threshold)), 4) if neg else None}


def select(rows: Sequence[Row], features: Sequence[str]) -> list[Row]:
    """The rows with only ``features`` (a subset of ``rag.answer.FEATURES``), in that order."""
    unknown = [f for f in features if f not in FEATURES]
    if unknown:
        from rag import InputError

        raise InputError(f"unknown abstention feature(s) {', '.join(unknown)}; choose from {', '.join(FEATURES)}")
    pick = [FEATURES.index(f) for f in features]
    return [Row(r.source, r.group, r.label, tuple(r.features[i] for i in pick)) for r in rows]


def calibrate(rows: Sequence[Row], max_wrong: float = MAX_WRONG_ABSTENTION, seeds: int = 5,
              features: Sequence[str] = FEATURES) -> dict[str, Any]:
    """Cross-validated threshold and rates, and the model refitted on all rows (over ``features``)."""
    if len({r.label for r in rows}) < 2:
        from rag import InputError

        raise InputError("fitting the abstention model needs both answerable and unanswerable questions")
    rows = select(rows, features)
    p = np.mean([out_of_fold(rows, seed=s) for s in range(seeds)], axis=0)
    threshold = choose_threshold(p, rows, max_wrong)
    model = _fit(np.asarray([r.features for r in rows]), np.asarray([r.label for r in rows]), _weights(rows))
    coefficients = [("bias", round(float(model.intercept_[0]), 3))] + \
        [(name, round(float(c), 3)) for name, c in zip(features, model.coef_[0])]
    result = {"rows": {"gold": sum(r.source == "gold" for r in rows), "squad": sum(r.source == "squad" for r in rows)},
              "max_wrong_abstention": max_wrong, "threshold": threshold, "coefficients": coefficients,
              "cross_validated": {s: rates(p, rows, threshold, s) for s in ("gold", "squad")
                                  if any(r.source == s for r in rows)}}
    return result


def render(result: dict[str, Any]) -> str:
    lines = ["abstention model (fitted on " + ", ".join(f"{n} {s} rows" for s, n in result["rows"].items() if n)
             + ")", f"threshold (cross-validated, wrong abstention <= {result['max_wrong_abstention']:.0%} on gold): "
             f"{result['threshold']}"]
    for source, r in result["cross_validated"].items():
        lines.append(f"  {source}: unanswerable abstained {r['unanswerable_abstained']}, "
                     f"answerable abstained {r['answerable_abstained']} "
                     f"({r['unanswerable']} / {r['answerable']} questions)")
    pairs = ", ".join(f'("{k}", {v})' for k, v in result["coefficients"])
    lines.append(f"Config(abstain_coefficients=({pairs}), abstain_threshold={result['threshold']})")
    return "\n".join(lines)
