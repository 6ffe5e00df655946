"""``rag eval --sweep`` and ``--fit-abstention``: real runs over the seed index, and the fitting maths."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from eval.calibrate import Row, calibrate, choose_threshold
from eval.tune import check_query_time, grid
from rag import ConfigError, InputError
from rag.answer import FEATURES
from rag.cli import main

GOLD = Path(__file__).resolve().parents[2] / "eval" / "gold.jsonl"


def _subset(tmp_path, answerable: int = 4, unanswerable: int = 2):
    """The first answerable and unanswerable questions of the shipped gold set."""
    rows = [json.loads(line) for line in GOLD.read_text(encoding="utf-8").splitlines() if line.strip()]
    picked = [r for r in rows if r["answerable"]][:answerable] + [r for r in rows if not r["answerable"]][:unanswerable]
    path = tmp_path / "subset.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in picked), encoding="utf-8")
    return path


def test_grid_is_every_combination_in_order():
    assert grid({"a": [1, 2], "b": ["x", "y"]}) == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"},
                                                   {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]


def test_index_time_settings_cannot_be_swept():
    with pytest.raises(ConfigError, match="chunk_tokens"):
        check_query_time(["dense_weight", "chunk_tokens"])


@pytest.mark.slow
def test_sweep_writes_one_row_per_combination(tmp_path, seed_index_dir, capsys):
    subset = _subset(tmp_path)
    out = tmp_path / "sweep"
    code = main(["--index", str(seed_index_dir), "-q", "eval", str(subset), "--retriever", "hybrid",
                 "--out", str(out), "--sweep", "dense_weight=0.0,1.0"])
    assert code == 0
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    assert [r["changes"] for r in rows] == [{"dense_weight": 0.0}, {"dense_weight": 1.0}]
    for r in rows:
        assert 0.0 <= r["metrics"]["retrieval.hit@1"] <= 1.0
    assert "| dense_weight |" in capsys.readouterr().out


def test_bad_sweep_is_a_one_line_error(seed_index_dir, tmp_path, capsys):
    subset = _subset(tmp_path)
    assert main(["--index", str(seed_index_dir), "eval", str(subset), "--sweep", "dense_weight"]) == 2
    assert "expected KEY=V1,V2" in capsys.readouterr().err


def test_unknown_abstention_feature_fails_before_any_question(seed_index_dir, tmp_path, capsys):
    subset = _subset(tmp_path)
    out = tmp_path / "fit"
    assert main(["--index", str(seed_index_dir), "-q", "eval", str(subset), "--fit-abstention", "--out", str(out),
                 "--features", "reader_logit,no_such_feature"]) == 2
    assert "unknown abstention feature(s) no_such_feature" in capsys.readouterr().err
    assert not out.exists()


def test_fit_abstention_writes_every_feature_of_every_row(seed_index_dir, tmp_path, capsys):
    subset = _subset(tmp_path, answerable=10, unanswerable=10)  # every training fold sees both classes
    out = tmp_path / "fit"
    assert main(["--index", str(seed_index_dir), "-q", "eval", str(subset), "--fit-abstention", "--out", str(out),
                 "--features", "reader_logit,top_passage_cosine"]) == 0
    result = json.loads((out / "calibration.json").read_text())
    assert [name for name, _ in result["coefficients"]] == ["bias", "reader_logit", "top_passage_cosine"]
    assert "--features reader_logit,top_passage_cosine" in result["command"]
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == result["rows"]["gold"]
    assert all(set(r["features"]) == set(FEATURES) for r in rows)


def _rows(n: int, seed: int = 0) -> list[Row]:
    """Separable synthetic rows: positives have a high reader logit and cosine, negatives low; span_margin is noise
    turned the wrong way (high for negatives)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = i % 2
        centre = 0.7 if label else 0.4
        feats = tuple(float(centre + rng.normal(0, 0.08)) if name != "span_margin" else float(1 - label)
                      for name in FEATURES)
        rows.append(Row("gold", f"q{i}", label, feats))
    return rows


def test_threshold_keeps_wrong_abstention_under_target():
    rows = _rows(200)
    p = np.asarray([0.9 if r.label else 0.1 for r in rows])
    p[0 if rows[0].label else 1] = 0.05  # one answerable question scored low
    t = choose_threshold(p, rows, max_wrong=0.04)
    positives = np.asarray([pi for pi, r in zip(p, rows) if r.label])
    assert (positives < t).mean() <= 0.04
    assert t > 0.1  # still abstains on the negatives


def test_calibrate_separates_separable_data():
    result = calibrate(_rows(120), seeds=2)
    cv = result["cross_validated"]["gold"]
    assert cv["answerable_abstained"] <= 0.04
    assert cv["unanswerable_abstained"] >= 0.9
    names = [name for name, _ in result["coefficients"]]
    assert names == ["bias", *FEATURES]
    weights = dict(result["coefficients"])
    assert weights["reader_logit"] > 0 and weights["span_margin"] < 0


def test_calibrate_on_a_feature_subset_names_only_those_features():
    result = calibrate(_rows(120), seeds=2, features=["reader_logit", "span_margin"])
    assert [name for name, _ in result["coefficients"]] == ["bias", "reader_logit", "span_margin"]
    with pytest.raises(InputError, match="unknown abstention feature.*no_such_feature"):
        calibrate(_rows(40), seeds=1, features=["reader_logit", "no_such_feature"])
