"""Stage 6a: the trained reader — reads each retrieved passage against the question.

One MiniLM encoder (initialised from all-MiniLM-L6-v2, fine-tuned by ``rag
train-reader``) reads ``[CLS] question [SEP] title — section ⏎ passage [SEP]``
once per passage and gives, from that one pass,

* a score for every sentence of the passage: how likely it is to hold the
  answer, read with its neighbours and the document/section headers (the mean
  of the sentence's token states next to the ``[CLS]`` state, then a linear
  layer; trained with binary cross-entropy);
* an answer span: start/end logits over the passage tokens, with ``[CLS]`` as
  "no answer here" (the SQuAD 2.0 recipe), so the exact answer inside the
  quoted sentence can be shown.

Reading a passage at once costs one forward pass per passage instead of one per
sentence, and every sentence is seen in its context.

The shipped weights live in ``models/reader/`` with ``reader.json`` (format,
settings, the sha256 of every file) and a model card. Loading checks every hash
before the weights are used; a missing or altered file is a ``ModelError``
naming the fix. Nothing is downloaded: the tokenizer files ship with the
weights.

The ``Reader`` protocol is the seam: the pipeline takes any object with
``read(question, passages, documents)``, so another reader (or a fake in
tests) plugs in through ``Assistant(reader=...)`` or ``Config.reader_path``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from .chunking import split_sentences
from .errors import ConfigError, ModelError
from .types import Document, Passage, Reading, SentenceScore

if TYPE_CHECKING:  # torch is imported lazily: the CLI's --help and error paths do not pay for it
    import torch

log = logging.getLogger(__name__)

FORMAT_NAME = "rag-reader"
FORMAT_VERSION = 1
MANIFEST = "reader.json"
WEIGHTS = "model.safetensors"
ENCODER_CONFIG = "config.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
PRECISIONS = ("auto", "float32", "bfloat16", "int8")
#: Longest answer span the span head may propose, in word pieces.
MAX_ANSWER_TOKENS = 30
#: Input length the encoder is trained and run at: question + headers + a 180-token chunk fit comfortably.
DEFAULT_MAX_LENGTH = 320


def default_reader_dir() -> Path:
    """``models/reader`` of the source tree this package sits in (where the weights ship)."""
    return Path(__file__).resolve().parent.parent / "models" / "reader"


def passage_header(title: str, section: str) -> str:
    """"title — section" (just the title when the section repeats it or is empty)."""
    return title if not section or section == title else f"{title} \u2014 {section}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@runtime_checkable
class Reader(Protocol):
    """Scores the sentences (and an answer span) of each passage for a question."""

    name: str

    def read(self, question: str, passages: Sequence[Passage], documents: Mapping[str, Document]
             ) -> list[Reading]:
        """One ``Reading`` per passage, in the order given."""
        ...

    def info(self) -> dict[str, Any]:
        """What ``rag info`` and evaluation reports show about this reader."""
        ...


# ---------------------------------------------------------------------------- features
@dataclass(frozen=True)
class Features:
    """One (question, passage) pair as the encoder reads it.

    ``sentence_ids[t]`` is the index of the passage sentence token ``t`` belongs to (-1 for the
    question, headers, special tokens and padding); ``offsets[t]`` is its character span relative
    to the passage start ((-1, -1) outside the passage).
    """

    input_ids: list[int]
    token_type_ids: list[int]
    sentence_ids: list[int]
    offsets: list[tuple[int, int]]
    n_sentences: int


def featurize(tokenizer: Any, questions: Sequence[str], headers: Sequence[str], passages: Sequence[str],
              sentences: Sequence[Sequence[tuple[int, int]]], max_length: int) -> list[Features]:
    """Tokenize question/passage pairs (batched) and map word pieces to passage sentences.

    ``sentences[i]`` are the sentence spans of ``passages[i]``, relative to its start. Only the
    passage side is truncated when a pair is too long; sentences cut off entirely get no tokens.
    """
    seconds = [f"{h}\n{p}" for h, p in zip(headers, passages)]
    enc = tokenizer(list(questions), seconds, truncation="only_second", max_length=max_length,
                    return_offsets_mapping=True, return_token_type_ids=True)
    out: list[Features] = []
    for i in range(len(seconds)):
        shift = len(headers[i]) + 1
        spans = sentences[i]
        seq_ids = enc.sequence_ids(i)
        sentence_ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        j = 0
        for (a, b), seq in zip(enc["offset_mapping"][i], seq_ids):
            if seq != 1 or a < shift or b <= a:
                sentence_ids.append(-1)
                offsets.append((-1, -1))
                continue
            a, b = a - shift, b - shift
            while j < len(spans) and spans[j][1] <= a:
                j += 1
            inside = j < len(spans) and spans[j][0] <= a
            sentence_ids.append(j if inside else -1)
            offsets.append((a, b))
        out.append(Features(list(enc["input_ids"][i]), list(enc["token_type_ids"][i]), sentence_ids, offsets,
                            len(spans)))
    return out


def collate(batch: Sequence[Features]) -> dict[str, "torch.Tensor"]:
    """Pad a batch to its longest pair."""
    import torch

    width = max(len(f.input_ids) for f in batch)
    n_sent = max(1, max(f.n_sentences for f in batch))

    def pad(rows: list[list[int]], value: int) -> "torch.Tensor":
        return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long)

    return {"input_ids": pad([f.input_ids for f in batch], 0),
            "token_type_ids": pad([f.token_type_ids for f in batch], 0),
            "attention_mask": pad([[1] * len(f.input_ids) for f in batch], 0),
            "sentence_ids": pad([f.sentence_ids for f in batch], -1),
            "n_sentences": torch.tensor(n_sent)}


# ---------------------------------------------------------------------------- network
def build_network(encoder: Any) -> "torch.nn.Module":
    """The encoder with its two heads (sentence scores, answer span)."""
    import torch
    from torch import nn

    class ReaderNet(nn.Module):
        def __init__(self, encoder: Any) -> None:
            super().__init__()
            self.encoder = encoder
            hidden = encoder.config.hidden_size
            self.dropout = nn.Dropout(encoder.config.hidden_dropout_prob)
            self.sentence_head = nn.Linear(2 * hidden, 1)
            self.span_head = nn.Linear(hidden, 2)

        def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, attention_mask: torch.Tensor,
                    sentence_ids: torch.Tensor, n_sentences: torch.Tensor) -> tuple[torch.Tensor, ...]:
            states = self.encoder(input_ids=input_ids, token_type_ids=token_type_ids,
                                  attention_mask=attention_mask).last_hidden_state
            start, end = self.span_head(states).float().unbind(-1)
            slots = torch.arange(int(n_sentences), device=states.device).view(1, -1, 1)
            member = (sentence_ids.unsqueeze(1) == slots).to(states.dtype)  # batch x sentences x tokens
            pooled = (member @ states) / member.sum(-1, keepdim=True).clamp(min=1)
            cls = states[:, :1, :].expand(-1, pooled.shape[1], -1)
            sentence = self.sentence_head(self.dropout(torch.cat([pooled, cls], -1))).float().squeeze(-1)
            # Logits of positions that are not passage tokens can never be chosen; [CLS] (0) is "no answer".
            passage = sentence_ids >= 0
            passage[:, 0] = True
            start = start.masked_fill(~passage, -1e4)
            end = end.masked_fill(~passage, -1e4)
            return sentence, start, end

    return ReaderNet(encoder)


def best_span(start: np.ndarray, end: np.ndarray, valid: np.ndarray, max_tokens: int = MAX_ANSWER_TOKENS
              ) -> tuple[int, int, float]:
    """The best (i, j) with i <= j < i + max_tokens over ``valid`` positions, and its start+end logit."""
    idx = np.flatnonzero(valid)
    if not len(idx):
        return -1, -1, float("-inf")
    s, e = start[idx], end[idx]
    scores = s[:, None] + e[None, :]
    pos = idx[None, :] - idx[:, None]
    scores = np.where((pos >= 0) & (pos < max_tokens), scores, -np.inf)
    flat = int(np.argmax(scores))
    i, j = divmod(flat, len(idx))
    return int(idx[i]), int(idx[j]), float(scores[i, j])


# ---------------------------------------------------------------------------- the shipped reader
def _sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))


def _verify(folder: Path) -> dict[str, Any]:
    """Read ``reader.json`` and check every file against its recorded sha256."""
    fix = f"restore it with: git checkout -- {folder} (or retrain with: rag train-reader --out {folder})"
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise ModelError(f"no trained reader at {folder} ({MANIFEST} is missing); {fix}")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = manifest["files"]
        if not isinstance(files, dict) or WEIGHTS not in files:
            raise KeyError(f"files.{WEIGHTS}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{manifest_path} is unreadable ({type(exc).__name__}: {exc}); {fix}") from exc
    if manifest.get("format") != FORMAT_NAME or manifest.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{folder} holds reader format {manifest.get('format')!r} "
                         f"v{manifest.get('format_version')}, this library reads {FORMAT_NAME} v{FORMAT_VERSION}; "
                         f"retrain with: rag train-reader --out {folder}")
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            raise ModelError(f"reader file {path} is missing; {fix}")
        if sha256_file(path) != expected:
            raise ModelError(f"reader file {path} does not match its recorded sha256 (corrupt or altered); {fix}")
    return manifest


def choose_precision(requested: str) -> str:
    """``auto``: int8 dynamic quantisation (measured fastest at equal quality on AVX2 and AVX512 CPUs)."""
    if requested not in PRECISIONS:
        raise ConfigError(f"reader_precision {requested!r} is unknown; choose one of {', '.join(PRECISIONS)}")
    return "int8" if requested == "auto" else requested


_loaded: dict[tuple[str, str], "TrainedReader"] = {}
_loaded_lock = threading.Lock()


class TrainedReader:
    """The fine-tuned MiniLM reader from a ``models/reader``-style folder (hash-checked, offline)."""

    def __init__(self, folder: str | Path | None = None, precision: str = "auto", batch_size: int = 8) -> None:
        self.folder = Path(folder) if folder else default_reader_dir()
        self.manifest = _verify(self.folder)
        self.name = str(self.manifest.get("name", "reader"))
        self.sha256 = self.manifest["files"][WEIGHTS]
        self.max_length = int(self.manifest.get("max_length", DEFAULT_MAX_LENGTH))
        self.precision = choose_precision(precision)
        if batch_size < 1:
            raise ConfigError(f"reader_batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self._lock = threading.Lock()  # one forward pass at a time: torch already uses every core
        started = time.perf_counter()
        self.tokenizer, self.network = load_network(self.folder, self.precision)
        log.info("loaded reader %s (%s, sha256 %s…) in %.2fs", self.name, self.precision, self.sha256[:12],
                 time.perf_counter() - started)

    @classmethod
    def shared(cls, folder: str | Path | None = None, precision: str = "auto", batch_size: int = 8
               ) -> "TrainedReader":
        """One reader per folder and precision per process (the weights are ~45 MB; loading takes a second)."""
        key = (str(Path(folder).resolve() if folder else default_reader_dir()), choose_precision(precision))
        with _loaded_lock:
            reader = _loaded.get(key)
            if reader is None or reader.batch_size != batch_size:
                reader = _loaded[key] = cls(folder, precision, batch_size)
            return reader

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256, "folder": str(self.folder), "precision": self.precision,
                "max_length": self.max_length, "base_model": self.manifest.get("base_model", {}).get("name"),
                "trained_at": self.manifest.get("created_at"), "commit": self.manifest.get("training", {}).get("commit")}

    def logits(self, features: Sequence[Features]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(sentence, start, end) logits of each pair, computed in length-sorted batches."""
        import torch

        order = sorted(range(len(features)), key=lambda i: len(features[i].input_ids))
        out: list[Any] = [None] * len(features)
        with self._lock, torch.inference_mode(), _autocast(self.precision):
            for b in range(0, len(order), self.batch_size):
                rows = order[b:b + self.batch_size]
                batch = collate([features[i] for i in rows])
                sentence, start, end = self.network(**batch)
                for k, i in enumerate(rows):
                    n = len(features[i].input_ids)
                    out[i] = (sentence[k, :features[i].n_sentences].float().numpy(),
                              start[k, :n].float().numpy(), end[k, :n].float().numpy())
        return out

    def read(self, question: str, passages: Sequence[Passage], documents: Mapping[str, Document]
             ) -> list[Reading]:
        if not passages:
            return []
        sentence_spans = []
        for p in passages:
            text = documents[p.doc_id].text
            sentence_spans.append([(a - p.start, b - p.start) for a, b in split_sentences(text, p.start, p.end)])
        with self._lock:  # the fast tokenizer is not safe to call from several threads at once
            features = featurize(self.tokenizer, [question] * len(passages),
                                 [passage_header(p.title, p.section) for p in passages],
                                 [p.text for p in passages], sentence_spans, self.max_length)
        readings = []
        for p, spans, f, (sent, start, end) in zip(passages, sentence_spans, features, self.logits(features)):
            seen = {s for s in f.sentence_ids if s >= 0}
            sentences = tuple(SentenceScore(p.start + a, p.start + b, float(sent[k]), _sigmoid(float(sent[k])))
                              for k, (a, b) in enumerate(spans) if k in seen)
            valid = np.asarray([s >= 0 for s in f.sentence_ids])
            i, j, span_logit = best_span(start, end, valid)
            null = float(start[0] + end[0])
            if i >= 0:
                span = (p.start + f.offsets[i][0], p.start + f.offsets[j][1])
            else:
                span = (-1, -1)
            best = max((s.probability for s in sentences), default=0.0)
            readings.append(Reading(p, best, sentences, span[0], span[1], span_logit - null))
        return readings


def _autocast(precision: str):
    import contextlib

    import torch

    if precision == "bfloat16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def load_network(folder: Path, precision: str = "float32") -> tuple[Any, Any]:
    """Tokenizer and network from a verified reader folder, in eval mode, quantised if asked."""
    from .embedding import set_offline_environment

    set_offline_environment()
    try:
        from safetensors.torch import load_file
        from transformers import AutoTokenizer, BertConfig, BertModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        encoder = BertModel(BertConfig.from_json_file(str(folder / ENCODER_CONFIG)), add_pooling_layer=False)
        network = build_network(encoder)
        state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(folder / WEIGHTS)).items()}
        missing, unexpected = network.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("position_ids")]
        if missing or unexpected:
            raise ModelError(f"{folder / WEIGHTS} does not fit the reader network (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]}); retrain with: rag train-reader --out {folder}")
        network.eval()
        if precision == "int8":
            network = quantize(network)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure here means "cannot load the reader offline"
        raise ModelError(f"could not load the reader from {folder}: {type(exc).__name__}: {exc}") from exc
    return tokenizer, network


def quantize(network: Any) -> Any:
    """Dynamic int8 quantisation of the Linear layers (weights int8, activations quantised per batch)."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notices; the API still ships in torch 2.13
        return torch.ao.quantization.quantize_dynamic(network, {torch.nn.Linear}, dtype=torch.qint8)
