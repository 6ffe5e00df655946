"""``rag train-reader`` end to end on a tiny slice: data, training, resumable checkpoints, export, loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag import Passage, TrainedReader
from rag.cli import main
from rag.reader import MANIFEST, WEIGHTS, sha256_file
from rag.train import read_squad, split_articles

FIXTURES = Path(__file__).parent / "fixtures"
TRAIN = FIXTURES / "reader_tiny_train.json"
SQUAD2 = FIXTURES / "reader_tiny_squad2.json"
TINY = ["--squad-train", str(TRAIN), "--squad2", str(SQUAD2), "--questions", "8", "--unanswerable", "3",
        "--v2-answerable", "3", "--val-questions", "6", "--val-fraction", "0.34", "--v2-val-fraction", "0.34",
        "--batch-size", "4", "--precision", "float32", "--checkpoint-every", "2", "--max-length", "96"]


def _train(tmp_path: Path, name: str, *extra: str) -> Path:
    out = tmp_path / name / "reader"
    code = main(["-q", "train-reader", *TINY, "--out", str(out), "--work-dir", str(tmp_path / name / "work"), *extra])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One uninterrupted tiny run, shared by the tests below; with what it printed."""
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        out = _train(tmp_path_factory.mktemp("train"), "run")
    return out, printed.getvalue()


def test_answers_are_located_and_ambiguous_ones_left_out():
    articles = read_squad(TRAIN)
    questions = [q for a in articles for p in a.paragraphs for q in p.questions]
    assert all(q.spans for q in questions)  # every tiny answer occurs once in its paragraph
    par = articles[0].paragraphs[0]
    q = par.questions[0]
    assert par.context[slice(*q.spans[0])] == "1871"
    v2 = read_squad(SQUAD2)
    assert sum(q.impossible and not q.spans for a in v2 for p in a.paragraphs for q in p.questions) == 4


def test_split_by_article_is_deterministic_and_never_empty():
    titles = [f"article {i}" for i in range(20)]
    held = split_articles(titles, 0.25, seed=13)
    assert held == split_articles(list(reversed(titles)), 0.25, seed=13)
    assert len(held) == 5 and held != split_articles(titles, 0.25, seed=14)
    assert len(split_articles(["a", "b"], 0.01, seed=1)) == 1  # at least one held out, never all


@pytest.mark.slow
def test_training_end_to_end_exports_a_loadable_hash_checked_reader(trained):
    out, printed = trained
    assert "squad_train_heldout" in printed and "answer_sentence_accuracy" in printed  # validation metrics printed
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["files"][WEIGHTS] == sha256_file(out / WEIGHTS)
    assert manifest["training"]["settings"]["seed"] == 13
    assert manifest["training"]["heldout"]["squad2_dev_articles"]  # split by article
    assert not set(manifest["training"]["heldout"]["squad2_dev_articles"]) \
        & set(manifest["training"]["trained_articles"]["squad2_dev"])
    card = (out / "README.md").read_text()
    assert manifest["files"][WEIGHTS] in card and "rag -q train-reader --squad-train" in card
    reader = TrainedReader(out, precision="float32")
    text = "The tower is 31 metres tall. Ships can see its light from far away."
    from rag import document_from_text

    doc = document_from_text("t", text, title="Lighthouses")
    [reading] = reader.read("How tall is the tower?", [Passage(text, "t", "Lighthouses", "", 0, len(text), 1.0)],
                            {"t": doc})
    assert len(reading.sentences) == 2 and 0.0 <= reading.score <= 1.0


@pytest.mark.slow
def test_an_interrupted_run_resumes_to_the_same_weights(trained, tmp_path, capsys):
    straight = trained[0]
    out = tmp_path / "resumed" / "reader"
    work = tmp_path / "resumed" / "work"
    base = ["-q", "train-reader", *TINY, "--out", str(out), "--work-dir", str(work)]
    assert main([*base, "--stop-after", "3"]) == 0
    assert "--resume" in capsys.readouterr().out and not out.exists()
    assert json.loads((work / "checkpoint" / "state.json").read_text())["step"] == 3
    assert main([*base, "--resume"]) == 0
    assert sha256_file(out / WEIGHTS) == sha256_file(straight / WEIGHTS)


def test_missing_training_data_is_a_clear_error(tmp_path, capsys):
    code = main(["-q", "train-reader", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "r")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--squad-train" in err and "Traceback" not in err


def test_the_recorded_command_is_the_one_given():
    from rag.train import training_command

    assert training_command(["-v", "train-reader", "--precision", "bfloat16"]) == \
        "rag -v train-reader --precision bfloat16"
    assert training_command(["train-reader", "--questions", "10", "--out", "my dir"]) == \
        "rag train-reader --questions 10 --out 'my dir'"
