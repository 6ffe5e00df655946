"""Which of the pre-reader heuristics still help once the reader scores sentences? (an experiment, not a test)

The heuristics that ``rag/answer.py`` had before the reader (commit 3d0910d) are imported from that
commit's file (``git show``), and added back, one at a time, on top of the reader's scores:

* sentence choice: the reader's logit plus ``w`` x [the sentence holds the answer type asked for]
  (number, date, name …), plus ``w`` / passage rank, plus ``w`` x key-term coverage;
* abstention: the old evidence features (``type_mismatch``, ``missing_anchor``, ``best_coverage``,
  ``missing_key_term``) next to the reader's, compared by cross-validated abstention rates.

Each question is read once; the variants only re-rank the reader's candidates, so the comparison is
exact (same passages, same readings). Run from the project root:

    .venv/bin/python -m eval.experiments.heuristics_addback eval/gold.jsonl eval/holdout.jsonl ...

It prints one row per variant: answer hit and citation precision without abstention (every question
answered), on the answerable questions of the given files.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from rag import Answer, Assistant
from rag.answer import Answerer, Candidate
from rag.lexical import analyze, question_terms

from ..calibrate import Row, calibrate
from ..gold import load_gold
from ..runner import score_answer

OLD_COMMIT = "3d0910d"


def old_answer_module() -> Any:
    """``rag/answer.py`` as it was before the reader, importable as ``rag._pre_reader_answer``."""
    root = Path(__file__).resolve().parents[2]
    source = subprocess.run(["git", "show", f"{OLD_COMMIT}:rag/answer.py"], cwd=root, capture_output=True,
                            text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "old_answer.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("rag._pre_reader_answer", path)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "rag"
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def coverage(question: str, text: str, idf: Callable[[str], float]) -> float:
    weights = {t: idf(t) for t in question_terms(question)}
    total = sum(weights.values())
    present = set(analyze(text))
    return sum(w for t, w in weights.items() if t in present) / total if total else 0.0


def variants(old: Any) -> dict[str, Callable[..., float]]:
    """Bonus functions added to a candidate's reader logit: (question, candidate, text, idf) -> bonus."""
    def type_bonus(w: float):
        return lambda q, c, text, idf, cos=None: w * float(old.expected_type(q) is not None and old.type_matches(
            old.expected_type(q), text, q))

    def rank_bonus(w: float):
        return lambda q, c, text, idf, cos=None: w / c.passage_rank

    def coverage_bonus(w: float):
        return lambda q, c, text, idf, cos=None: w * coverage(q, text, idf)

    def cosine_bonus(w: float):
        return lambda q, c, text, idf, cos=None: w * (cos or 0.0)

    out: dict[str, Callable[..., float]] = {"reader only": lambda q, c, text, idf, cos=None: 0.0}
    for w in (0.5, 1.0, 2.0):
        out[f"+ answer type x{w}"] = type_bonus(w)
        out[f"+ passage rank prior x{w}"] = rank_bonus(w)
        out[f"+ key-term coverage x{w}"] = coverage_bonus(w)
    for w in (1.0, 2.0, 4.0, 8.0):
        out[f"+ sentence cosine x{w}"] = cosine_bonus(w)
    for w in (2.0, 4.0):
        cos, cov, typ = cosine_bonus(w), coverage_bonus(w / 2), type_bonus(w / 4)
        out[f"+ cosine x{w} + coverage x{w / 2} + type x{w / 4}"] = (
            lambda q, c, text, idf, cosv=None, cos=cos, cov=cov, typ=typ:
            cos(q, c, text, idf, cosv) + cov(q, c, text, idf) + typ(q, c, text, idf))
    return out


def main(paths: Sequence[str]) -> int:
    old = old_answer_module()
    assistant = Assistant.load()
    answerer: Answerer = assistant.answerer
    idf = assistant.index.bm25.idf
    items = [item for path in paths for item in load_gold(path, assistant.documents).items]
    cached = []
    cosines: dict[tuple[str, str, int], float] = {}
    for item in items:
        question = assistant._question(item.question)
        passages, readings = assistant._search(question, assistant.config.top_k, None, None)
        cached.append((item, question, passages, readings))
        ranked = answerer.candidates(readings)
        texts = [assistant.documents[c.doc_id].text[c.start:c.end] for c in ranked]
        if texts:
            vectors = assistant.embedder.encode(texts)
            for c, cos in zip(ranked, (vectors @ assistant.embedder.encode_one(question)).tolist()):
                cosines[(item.id, c.doc_id, c.start)] = cos
    table = []
    for name, bonus in variants(old).items():
        hits, precision_num, precision_den = [], 0, 0
        for item, question, passages, readings in cached:
            if not item.answerable:
                continue
            ranked = answerer.candidates(readings)
            if not ranked:
                hits.append(0.0)
                continue
            docs = assistant.documents

            def total(c: Candidate) -> float:
                return c.score + bonus(question, c, docs[c.doc_id].text[c.start:c.end], idf,
                                       cosines.get((item.id, c.doc_id, c.start)))

            rescored = sorted(ranked, key=lambda c: -total(c))
            best = rescored[0]
            shifted = [Candidate(c.doc_id, c.start, c.end, c.passage_rank, c.logit, total(c) - 1e-9 * i,
                                 c.prev_start, c.answer_start, c.answer_end) for i, c in enumerate(rescored)]
            spans = answerer._spans(shifted[0], shifted)
            spans.sort(key=lambda s: (s[0].doc_id != best.doc_id, s[0].doc_id, s[1]))
            answer: Answer = answerer._compose(question, passages, spans, 1.0, {})
            m, _record = score_answer(answer, item, docs)
            hits.append(m["answer_hit"])
            precision_num += m.get("citations_relevant") or 0
            precision_den += len(answer.citations)
        table.append((name, float(np.mean(hits)), precision_num / max(precision_den, 1)))
    print(f"{len(items)} questions ({sum(i.answerable for i in items)} answerable) from {', '.join(paths)}")
    print("| variant | answer hit | citation precision |\n|---|---|---|")
    for name, hit, precision in table:
        print(f"| {name} | {hit:.3f} | {precision:.3f} |")

    # Abstention: the old evidence features next to the reader's, cross-validated.
    rows_extra = []
    for item, question, passages, readings in cached:
        ranked = answerer.candidates(readings)
        if not ranked:
            continue
        best = ranked[0]
        feats = answerer.features(passages, readings, best)
        doc = assistant.documents[best.doc_id]
        p = next(p for p in passages if p.doc_id == best.doc_id and p.start <= best.start < p.end)
        kind = old.expected_type(question)
        text = doc.text[best.start:best.end]
        weights = {t: idf(t) for t in question_terms(question)}
        headed = f"{p.title} {p.section} {text}"
        extra = {
            "type_mismatch": 0.0 if kind not in old._STRICT_TYPES or old.type_matches(kind, text, question) else 1.0,
            "missing_anchor": old.missing_anchors(old.question_anchors(question), f"{p.title} {p.section} {p.text}"),
            "best_coverage": coverage(question, headed, idf),
            "missing_key_term": (max((w for t, w in weights.items() if t not in set(analyze(headed))), default=0.0)
                                 / (sum(weights.values()) or 1.0)),
        }
        rows_extra.append((item, {**feats, **extra}))
    base = ["reader_logit", "span_margin", "best_span_margin", "top_passage_cosine"]
    print("\n| abstention features | unanswerable abstained (CV) | answerable abstained (CV) |\n|---|---|---|")
    for extra in ([], ["type_mismatch"], ["missing_anchor"], ["best_coverage"], ["missing_key_term"],
                  ["type_mismatch", "missing_anchor", "best_coverage", "missing_key_term"]):
        names = base + extra
        rows = [Row("gold", item.id, int(item.answerable), tuple(f[n] for n in names)) for item, f in rows_extra]
        result = _calibrate(rows, names)
        cv = result["cross_validated"]["gold"]
        print(f"| {' + '.join(names)} | {cv['unanswerable_abstained']} | {cv['answerable_abstained']} |")
    return 0


def _calibrate(rows: list[Row], names: list[str]) -> dict[str, Any]:
    import eval.calibrate as cal

    saved = cal.FEATURES
    cal.FEATURES = tuple(names)  # calibrate() selects by rag.answer.FEATURES: give it this experiment's names
    try:
        return calibrate(rows, features=names)
    finally:
        cal.FEATURES = saved


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
