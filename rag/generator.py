"""Opt-in stage 7: a fluent answer written by an LLM, every sentence of it checked against its source.

The extractive answer (``rag.answer``) stays the default and the fallback. When a generator is configured,
the top passages are numbered [1]…[n] in a prompt sent to any OpenAI-compatible endpoint
(``POST {url}/v1/chat/completions``: llama.cpp's ``llama-server``, Ollama, vLLM, a hosted API), and the
model is told to answer only from them and to cite ``[n]`` after each sentence.

Nothing the model writes is shown as sourced until ``SupportChecker`` has found, inside a passage the
sentence cites, the sentence (or two adjacent sentences) that backs it:

* every number in the generated sentence appears in that quote (and "million"/"percent" words too);
* no negation is added or dropped ("not", "never", …);
* every name (a capitalised word past the first, an acronym) appears in the cited passage or its headings;
* most of its content words (stemmed) appear in the quote or the passage's headings;
* its embedding (all-MiniLM-L6-v2, ``Embedder.encode``) is close to the quote's.

A sentence without a citation, citing a passage that was not given, or without such a quote is dropped
from the answer (kept in ``GeneratedAnswer.sentences`` with ``supported=False`` and the reason). The
trained reader does not decide support: it scores whether a sentence answers the *question*, so it would
pass a sentence with a wrong number as readily as the right one. Its scores (the readings the extractive
stage already made) only choose between quotes that both pass, the one the reader believes answers.

If no sentence survives, or the server is down, slow or answers nonsense, the extractive answer is
returned and ``mode`` says why. An abstention is never overridden: the generator is not called.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Mapping, Sequence
from urllib.parse import urlsplit

import httpx
import numpy as np

from .chunking import split_sentences
from .embedding import Embedder
from .errors import ConfigError, RagError
from .lexical import analyze
from .reader import passage_header
from .types import Answer, Citation, Document, Passage, Reading

log = logging.getLogger(__name__)

#: Which stage answered (``GeneratedAnswer.mode``); fallbacks start with "extractive (".
MODE_GENERATED = "generated"
MODE_EXTRACTIVE = "extractive"

#: Seconds for a whole generated answer. Measured on this project's 2 cores: SmolLM2-135M 11-21 s with five
#: passages (a ~1,000-token prompt at ~110 tokens/s on one thread), Qwen2.5-1.5B 30-90 s (issue 13); past two
#: minutes the user is better served by the extractive answer already computed.
DEFAULT_TIMEOUT = 120.0
#: Seconds to open the connection. A local server accepts at once and a closed port refuses at once; this only
#: bounds a remote host that drops packets, so every ask stays responsive when the server is gone.
CONNECT_TIMEOUT = 5.0
#: Tokens the model may write: three short cited sentences take about 100; the rest is room for a preamble.
DEFAULT_MAX_TOKENS = 256
#: Passages numbered in the prompt (the best-ranked ones). Five passages of at most 1,000 characters are about
#: 1,300 tokens, which fits a 2,048-token context with the answer; more costs prompt time on a CPU.
DEFAULT_MAX_PASSAGES = 5
#: An OpenAI-compatible server needs a model name; llama.cpp's server accepts any.
DEFAULT_MODEL = "default"
#: Environment variables configuring the generator where the config leaves it unset: RAG_GENERATOR_URL,
#: RAG_GENERATOR_MODEL and RAG_GENERATOR_API_KEY.
ENV_PREFIX = "RAG_GENERATOR_"
ENV_FIELDS = ("url", "model", "api_key")

#: Embedding cosine of a generated sentence and its quote at or above which it may be a restatement. Measured on the
#: seeds (tests/test_generator.py keeps these cases): 11 hand-written faithful paraphrases of
#: gold evidence scored 0.65-0.97 against their quote; of 289 sentences from neighbouring passages cited to the
#: wrong passage, 115 passed the number/name/negation tests and 4 passed this and the coverage test too — 3 of
#: those restate a sentence the cited passage does hold.
SUPPORT_MIN_COSINE = 0.6
#: Share of the generated sentence's content terms (stemmed, stop words out) found in the quote or the passage's
#: title/section: the paraphrases above kept 0.54-1.0; 0.6 would have rejected two of them.
SUPPORT_MIN_COVERAGE = 0.5
#: A quote is one passage sentence or this many adjacent ones (a generated sentence often merges two).
MAX_QUOTE_SENTENCES = 2
#: A citation range wider than this ("[1-999]") is not a list of passages but noise.
MAX_CITED_RANGE = 20
#: Weight of the reader's probability (does this passage sentence answer the question?) when two quotes both
#: support a sentence: small, so it only breaks near-ties in cosine.
READER_TIEBREAK = 0.05

_MARKER = re.compile(r"\s*\[\s*(?:passages?\s*)?(\d{1,3}(?:\s*(?:,|;|and|-|–)\s*\d{1,3})*)\s*\]", re.IGNORECASE)
_LIST_ITEM = re.compile(r"^[ \t]*(?:[-*•]|\d{1,2}[.)])[ \t]+", re.MULTILINE)
_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL | re.IGNORECASE)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_WORD = re.compile(r"[^\W_]+(?:['’][^\W\d_]+)?")
_NEGATIONS = frozenset({"not", "no", "never", "none", "neither", "nor", "cannot", "without", "nobody", "nothing"})
#: Words that make a number mean something else ("2 million" is not "2 billion"), or stand for one ("hundreds"):
#: each one in a generated sentence must be in its quote.
_SCALES = {"dozen": "dozen", "dozens": "dozen", "hundred": "hundred", "hundreds": "hundred", "thousand": "thousand",
           "thousands": "thousand", "million": "million", "millions": "million", "billion": "billion",
           "billions": "billion", "trillion": "trillion", "percent": "percent", "per cent": "percent",
           "%": "percent"}
_SCALE = re.compile(r"%|\bper cent\b|\b(?:dozens?|hundreds?|thousands?|millions?|billions?|trillion|percent)\b",
                    re.IGNORECASE)
_NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
_NUMBER_WORDS.update({w: 10 * i for i, w in enumerate("thirty forty fifty sixty seventy eighty ninety".split(), 3)})
_NUMBER_WORD = re.compile(r"\b(" + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True)) + r")(?:[- ]("
                          + "|".join(w for w in _NUMBER_WORDS if _NUMBER_WORDS[w] < 10 and w != "zero") + r"))?\b",
                          re.IGNORECASE)
#: Words joining the capitalised words of a name ("United States Institute of Peace" -> USIP).
_NAME_JOINERS = frozenset({"of", "and", "for", "the", "on", "in", "de"})

SYSTEM_PROMPT = (
    "You answer questions using only the numbered passages the user gives, never other knowledge. "
    "Write one to three short sentences. End every sentence with the number of the passage it comes from "
    "in square brackets, for example: Most victims are women [2]. "
    "Copy numbers and names exactly as the passage gives them. "
    "If the passages do not answer the question, write only: The passages do not answer this question.")


class GeneratorError(RagError):
    """The generator could not produce text: the server is down, too slow, or answered something unusable.

    ``Generator.generate`` turns it into the extractive answer; only ``complete`` and ``stream`` raise it.
    """


# ---------------------------------------------------------------------------- settings and results
@dataclass(frozen=True)
class GeneratorSettings:
    """Where the OpenAI-compatible server is and how to ask it.

    ``url`` is the server's base (``http://127.0.0.1:8080``) or its ``/v1`` base
    (``http://127.0.0.1:11434/v1`` for Ollama); ``api_key`` is sent as a Bearer token when set
    (never logged). ``timeout`` bounds the whole answer in seconds.
    """

    url: str
    model: str = DEFAULT_MODEL
    timeout: float = DEFAULT_TIMEOUT
    max_tokens: int = DEFAULT_MAX_TOKENS
    temperature: float = 0.0
    max_passages: int = DEFAULT_MAX_PASSAGES
    api_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url) if isinstance(self.url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"generator url {self.url!r} must be like http://127.0.0.1:8080 "
                              "(an OpenAI-compatible server)")
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(f"generator model must be a name such as qwen2.5:1.5b, got {self.model!r}")
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)) or not self.timeout > 0:
            raise ConfigError(f"generator timeout must be a number of seconds above 0, got {self.timeout!r}")
        for name in ("max_tokens", "max_passages"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"generator {name} must be a positive integer, got {value!r}")
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float)) \
                or not 0.0 <= self.temperature <= 2.0:
            raise ConfigError(f"generator temperature must be between 0 and 2, got {self.temperature!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **values: Any) -> "GeneratorSettings | None":
        """Settings from ``values``, with ``RAG_GENERATOR_URL`` / ``_MODEL`` / ``_API_KEY`` filling what is unset
        (None or ""); None when no URL is given anywhere (the generator is off).

        The API key comes from the environment (or the caller) only, so it never lands in a saved config.
        """
        env = os.environ if environ is None else environ
        given = {k: v for k, v in values.items() if v is not None and v != ""}
        for name in ENV_FIELDS:
            raw = env.get(f"{ENV_PREFIX}{name.upper()}", "").strip()
            if raw and name not in given:
                given[name] = raw
        return cls(**given) if given.get("url") else None

    @property
    def endpoint(self) -> str:
        """The chat-completions URL, whether ``url`` was the server's root or its ``/v1`` base."""
        base = self.url.rstrip("/")
        if base.endswith("/chat/completions"):
            return base
        return base + ("/chat/completions" if base.endswith("/v1") else "/v1/chat/completions")

    @property
    def is_local(self) -> bool:
        """Whether the server is on this machine (passages never leave it)."""
        host = urlsplit(self.url).hostname or ""
        return host in ("localhost", "::1") or host.startswith("127.")


@dataclass(frozen=True)
class Support:
    """The quote that backs a generated sentence: an exact slice of a cited passage's document."""

    #: The cited passage's number in the prompt (1-based).
    passage_number: int
    doc_id: str
    start: int
    end: int
    quote: str
    cosine: float
    coverage: float
    #: The reader's probability that the quote answers the question (0 when the passage was not read).
    reader_probability: float = 0.0


@dataclass(frozen=True)
class GeneratedSentence:
    """One sentence the model wrote, as checked. ``text`` has its citation markers removed."""

    text: str
    #: Passage numbers it cited, in the prompt's numbering.
    cited: tuple[int, ...]
    supported: bool
    #: Why it was dropped ("" when supported).
    reason: str = ""
    support: Support | None = None


@dataclass(frozen=True)
class GeneratedAnswer:
    """What the generator stage returns: the answer to show and how it came about.

    ``answer`` is the generated answer (only supported sentences, each cited by its quote, numbered 1…m in
    reading order like an extractive answer) or, on any fallback, the extractive answer unchanged.
    ``mode`` is "generated", "extractive" (abstained, or nothing to generate from), or
    "extractive (<why>)" — e.g. "extractive (generator unavailable: …)".
    """

    answer: Answer
    mode: str
    #: Every sentence the model wrote, supported or not (empty when it was not called or failed).
    sentences: tuple[GeneratedSentence, ...] = ()
    #: The model's text as received.
    raw: str = ""
    #: The passages as numbered in the prompt: ``passages[n - 1]`` is [n].
    passages: tuple[Passage, ...] = ()
    model: str = ""
    seconds: float = 0.0

    @property
    def generated(self) -> bool:
        return self.mode == MODE_GENERATED

    def to_dict(self) -> dict[str, Any]:
        """The answer's dict plus the generator's record (for ``--json`` and the API)."""
        data = self.answer.to_dict()
        data["mode"] = self.mode
        data["generator"] = {
            "model": self.model, "seconds": round(self.seconds, 3), "raw": self.raw,
            "sentences": [{"text": s.text, "cited": list(s.cited), "supported": s.supported, "reason": s.reason,
                           "support": None if s.support is None else {
                               "passage": s.support.passage_number, "doc_id": s.support.doc_id,
                               "start": s.support.start, "end": s.support.end, "quote": s.support.quote,
                               "cosine": round(s.support.cosine, 4), "coverage": round(s.support.coverage, 4),
                               "reader_probability": round(s.support.reader_probability, 4)}}
                          for s in self.sentences]}
        return data


# ---------------------------------------------------------------------------- parsing the model's text
def clean_output(text: str) -> str:
    """The model's answer without a reasoning block (``<think>…</think>`` of Qwen3-style models)."""
    return _THINK.sub("", text).strip()


def split_generated(text: str) -> list[tuple[str, tuple[int, ...]]]:
    """The model's text as (sentence without markers, cited passage numbers), in order.

    Markers may come before or after the full stop ("… women [2]." or "… women. [2]"), several at once
    ("[1][3]", "[1, 3]", "[2-3]"); a marker opening a sentence belongs to the one before it.
    """
    # Markdown emphasis and list bullets go first: the "1." of a list is no claimed number.
    text = _LIST_ITEM.sub("", clean_output(text).replace("**", ""))
    pieces: list[tuple[str, list[int]]] = []
    for start, end in split_sentences(text):
        sentence = text[start:end]
        lead = re.match(r"(?:\s*\[[^\]]*\d[^\]]*\])+", sentence)
        if lead and pieces and _MARKER.match(lead.group(0)):  # "… women. [2] Next sentence": [2] is the last one's
            pieces[-1][1].extend(_numbers_of(lead.group(0)))
            sentence = sentence[lead.end():]
        cited = _numbers_of(sentence)
        plain = re.sub(r"\s+([.,;:!?])", r"\1", " ".join(_MARKER.sub("", sentence).split()))
        if plain:
            pieces.append((plain, cited))
    return [(s, tuple(dict.fromkeys(c))) for s, c in pieces]


def _numbers_of(markers: str) -> list[int]:
    out: list[int] = []
    for m in _MARKER.finditer(markers):
        body = m.group(1)
        for a, b in re.findall(r"(\d+)\s*[-–]\s*(\d+)", body):  # a range "[2-4]"
            if 0 <= int(b) - int(a) <= MAX_CITED_RANGE:
                out.extend(range(int(a), int(b) + 1))
        body = re.sub(r"\d+\s*[-–]\s*\d+", " ", body)
        out.extend(int(n) for n in re.findall(r"\d+", body))
    return out


# ---------------------------------------------------------------------------- the support test
def numbers_in(text: str) -> set[str]:
    """Numbers written in ``text``, normalised ("120,000" -> "120000"); spelled ones too ("forty-six" -> "46")."""
    found = {n.replace(",", "").rstrip(".") for n in _NUMBER.findall(text)}
    for m in _NUMBER_WORD.finditer(text):
        value = _NUMBER_WORDS[m.group(1).lower()] + (_NUMBER_WORDS[m.group(2).lower()] if m.group(2) else 0)
        found.add(str(value))
    return found


def _digit_numbers(text: str) -> set[str]:
    """Numbers written with digits (the generated side: "one of them" is not a claimed quantity)."""
    return {n.replace(",", "").rstrip(".") for n in _NUMBER.findall(text)}


def _scales(text: str) -> set[str]:
    return {_SCALES[m.group(0).lower()] for m in _SCALE.finditer(text)}


def _words(text: str) -> list[str]:
    return [m.group(0) for m in _WORD.finditer(text)]


def _negated(text: str) -> bool:
    lower = text.lower().replace("’", "'").replace("not only", " ")  # "not only … but also" affirms
    return "n't" in lower or bool(set(_words(lower)) & _NEGATIONS)


_CLAUSE = re.compile(r"[,;:()\u2014\u2013]|\s-\s|\b(?:but|although|though|while|whereas)\b", re.IGNORECASE)


def negation_differs(sentence: str, sentence_negated: bool, quote: str) -> bool:
    """Whether the sentence adds a negation the quote lacks, or drops the one in the quote's clause it restates.

    A quote often holds several clauses ("…, which received 117 calls in 2022, none of those calls led …"): only
    the clauses sharing the most content words with the sentence must agree with it.
    """
    if sentence_negated:
        return not _negated(quote)
    if not _negated(quote):
        return False
    terms = set(analyze(sentence))
    clauses = [c for c in _CLAUSE.split(quote) if c.strip()]
    overlap = [len(terms & set(analyze(c))) for c in clauses]
    best = max(overlap, default=0)
    return any(_negated(c) for c, o in zip(clauses, overlap) if o == best)


def _acronyms(text: str) -> set[str]:
    """Initials of runs of capitalised words ("United Nations" -> "UN"), every sub-run of two or more."""
    out: set[str] = set()
    run: list[str] = []
    for word in _words(text) + ["."]:
        if word[:1].isupper():
            run.append(word[0])
            continue
        if word.lower() in _NAME_JOINERS and run:
            continue
        for i in range(len(run)):
            for j in range(i + 2, len(run) + 1):
                out.add("".join(run[i:j]))
        run = []
    return out


def names_in(sentence: str) -> list[str]:
    """Words that name something: capitalised past the sentence's first word, or acronyms anywhere."""
    words = _words(sentence)
    return [w for i, w in enumerate(words)
            if (w.isupper() and len(w) >= 2 and not w.isdigit()) or (i > 0 and w[:1].isupper())]


@dataclass(frozen=True)
class SupportThresholds:
    """The support test's limits (module constants by default; tests may tighten them)."""

    min_cosine: float = SUPPORT_MIN_COSINE
    min_coverage: float = SUPPORT_MIN_COVERAGE
    max_quote_sentences: int = MAX_QUOTE_SENTENCES


class SupportChecker:
    """Finds, for each generated sentence, the quote in a cited passage that backs it (or says why none does)."""

    def __init__(self, embedder: Embedder, thresholds: SupportThresholds | None = None) -> None:
        self.embedder = embedder
        self.thresholds = thresholds or SupportThresholds()

    def check(self, sentences: Sequence[tuple[str, tuple[int, ...]]], passages: Sequence[Passage],
              documents: Mapping[str, Document], readings: Sequence[Reading] = ()) -> list[GeneratedSentence]:
        """Check (sentence, cited numbers) pairs against ``passages`` ([1] is ``passages[0]``)."""
        quotes: dict[int, list[tuple[int, int, int]]] = {}  # passage number -> (start, end, sentences)
        out: list[GeneratedSentence | _Pending] = []
        for text, cited in sentences:
            if not cited:
                out.append(GeneratedSentence(text, cited, False, "no citation"))
            elif bad := [n for n in cited if not 1 <= n <= len(passages)]:
                out.append(GeneratedSentence(text, cited, False, f"cites [{bad[0]}], but only "
                                                                 f"{len(passages)} passages were given"))
            elif not analyze(text):
                out.append(GeneratedSentence(text, cited, False, "no content words"))
            else:
                for n in cited:
                    if n not in quotes:
                        quotes[n] = self._quote_spans(passages[n - 1], documents)
                out.append(self._lexical(text, cited, passages, documents, quotes))
        # Only quotes that passed the lexical tests are embedded, with their sentences, in one batch.
        pending = [p for p in out if isinstance(p, _Pending) and p.candidates]
        texts = list(dict.fromkeys([p.text for p in pending]
                                   + [documents[passages[c.number - 1].doc_id].text[c.start:c.end]
                                      for p in pending for c in p.candidates]))
        vectors = dict(zip(texts, self.embedder.encode(texts))) if texts else {}
        probability = {(r.passage.doc_id, s.start, s.end): s.probability for r in readings for s in r.sentences}
        return [self._decide(p, passages, documents, vectors, probability) if isinstance(p, _Pending) else p
                for p in out]

    def _quote_spans(self, passage: Passage, documents: Mapping[str, Document]) -> list[tuple[int, int, int]]:
        """Every run of one to ``max_quote_sentences`` adjacent sentences of the passage: (start, end, how many)."""
        spans = split_sentences(documents[passage.doc_id].text, passage.start, passage.end)
        return [(spans[i][0], spans[j][1], j - i + 1) for i in range(len(spans))
                for j in range(i, min(i + self.thresholds.max_quote_sentences, len(spans)))]

    def _lexical(self, text: str, cited: tuple[int, ...], passages: Sequence[Passage],
                 documents: Mapping[str, Document], quotes: Mapping[int, list[tuple[int, int, int]]]) -> "_Pending":
        """The quotes of the cited passages that pass the cheap tests (numbers, negation, names, coverage)."""
        numbers, scales, negated = _digit_numbers(text), _scales(text), _negated(text)
        terms = {t for t in analyze(text) if not t[:1].isdigit()}  # numbers have their own, stricter test
        names = names_in(text)
        candidates: list[_Candidate] = []
        closest = (-1.0, "no sentence in the cited passage")  # (coverage, why) of the nearest miss
        for n in cited:
            passage = passages[n - 1]
            doc = documents[passage.doc_id]
            header = passage_header(passage.title, passage.section)
            header_stems = set(analyze(header))
            context = doc.text[passage.start:passage.end] + " " + header
            context_words, context_stems = {w.lower() for w in _words(context)}, set(analyze(context))
            context_acronyms = _acronyms(context)
            missing_names = [w for w in names if w.lower() not in context_words
                             and not set(analyze(w)) <= context_stems and w not in context_acronyms]
            for a, b, size in quotes[n]:
                quote = doc.text[a:b]
                stems = set(analyze(quote)) | header_stems
                coverage = len(terms & stems) / len(terms) if terms else 1.0
                reason = ""
                if missing_names:  # a name the passage never mentions: no quote of it can back the sentence
                    reason = f"'{missing_names[0]}' is not in passage [{n}]"
                elif missing := sorted(numbers - numbers_in(quote)):
                    reason = f"number {missing[0]} is not in the quote from [{n}]"
                elif missing := sorted(scales - _scales(quote)):
                    reason = f"'{missing[0]}' is not in the quote from [{n}]"
                elif negation_differs(text, negated, quote):
                    reason = f"negation differs from the quote from [{n}]"
                elif coverage < self.thresholds.min_coverage:
                    reason = f"only {coverage:.0%} of its words are in the quote from [{n}]"
                if not reason:
                    candidates.append(_Candidate(n, a, b, size, coverage))
                elif coverage > closest[0]:
                    closest = (coverage, reason)
        return _Pending(text, cited, tuple(candidates), closest[1])

    def _decide(self, pending: "_Pending", passages: Sequence[Passage], documents: Mapping[str, Document],
                vectors: Mapping[str, np.ndarray], probability: Mapping[tuple[str, int, int], float]
                ) -> GeneratedSentence:
        """Supported by the shortest candidate quote close enough in meaning (the reader breaking near-ties)."""
        limit = self.thresholds.min_cosine
        passing: list[tuple[tuple[int, float], Support]] = []
        nearest = -2.0
        for c in pending.candidates:
            doc_id = passages[c.number - 1].doc_id
            quote = documents[doc_id].text[c.start:c.end]
            cosine = float(np.dot(vectors[pending.text], vectors[quote]))
            nearest = max(nearest, cosine)
            if cosine < limit:
                continue
            reader = max((p for (d, s, e), p in probability.items() if d == doc_id and c.start <= s and e <= c.end),
                         default=0.0)
            support = Support(c.number, doc_id, c.start, c.end, quote, cosine, c.coverage, reader)
            passing.append(((-c.size, cosine + READER_TIEBREAK * reader), support))
        if not passing:
            reason = pending.reason if not pending.candidates else \
                f"too far in meaning from every quote it could cite (cosine {nearest:.2f} < {limit:.2f})"
            return GeneratedSentence(pending.text, pending.cited, False, reason)
        return GeneratedSentence(pending.text, pending.cited, True, "", max(passing, key=lambda item: item[0])[1])


@dataclass(frozen=True)
class _Candidate:
    """A quote of a cited passage that passed the lexical tests."""

    number: int
    start: int
    end: int
    size: int  # sentences in the quote
    coverage: float


@dataclass(frozen=True)
class _Pending:
    """A sentence between the lexical tests and the embedding test."""

    text: str
    cited: tuple[int, ...]
    candidates: tuple[_Candidate, ...]
    reason: str  # why the nearest quote failed the lexical tests


# ---------------------------------------------------------------------------- the generator
def build_messages(question: str, passages: Sequence[Passage]) -> list[dict[str, str]]:
    """The chat messages: the rules, then the passages numbered [1]…[n] and the question."""
    blocks = [f"[{i}] {passage_header(p.title, p.section)}\n{' '.join(p.text.split())}"
              for i, p in enumerate(passages, 1)]
    # The format rule is repeated last, next to where the model starts writing: small models follow it better there.
    user = ("Passages:\n\n" + "\n\n".join(blocks) + f"\n\nQuestion: {question}\n\n"
            "Answer from the passages in one to three sentences, each ending with its passage number, like [1].")
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


class Generator:
    """Writes an answer through an OpenAI-compatible server and keeps only the sentences its sources back.

    >>> generator = Generator(GeneratorSettings("http://127.0.0.1:8080", "qwen2.5-1.5b-instruct"), embedder)
    >>> result = generator.generate(question, answer.passages, answer, assistant.documents, readings)
    >>> result.mode, result.answer.text     # "generated" or "extractive (…)", and the answer to show
    """

    def __init__(self, settings: GeneratorSettings, embedder: Embedder,
                 thresholds: SupportThresholds | None = None) -> None:
        self.settings = settings
        self.checker = SupportChecker(embedder, thresholds)
        if not settings.is_local:
            log.warning("the generator at %s is not on this machine: the question and its passages are sent there",
                        settings.url)

    # ------------------------------------------------------------------ HTTP
    def _client(self) -> httpx.Client:
        s = self.settings
        headers = {"Authorization": f"Bearer {s.api_key}"} if s.api_key else {}
        # The read timeout bounds each wait for bytes; the deadline in _lines bounds the whole answer.
        timeout = httpx.Timeout(s.timeout, connect=min(CONNECT_TIMEOUT, s.timeout))
        return httpx.Client(timeout=timeout, headers=headers, trust_env=False)  # no proxy from the environment

    def _body(self, messages: Sequence[Mapping[str, str]], stream: bool) -> dict[str, Any]:
        s = self.settings
        return {"model": s.model, "messages": list(messages), "max_tokens": s.max_tokens,
                "temperature": s.temperature, "stream": stream}

    def _lines(self, messages: Sequence[Mapping[str, str]], stream: bool) -> Iterator[str]:
        """The response's lines, with every failure turned into a ``GeneratorError`` naming the cause."""
        s = self.settings
        deadline = time.monotonic() + s.timeout
        try:
            with self._client() as client, client.stream("POST", s.endpoint, json=self._body(messages, stream)) as r:
                if r.status_code >= 400:
                    detail = " ".join(r.read().decode("utf-8", "replace").split())[:300]
                    raise GeneratorError(f"{s.endpoint} answered HTTP {r.status_code}: {detail}")
                for line in r.iter_lines():
                    if time.monotonic() > deadline:
                        raise GeneratorError(f"{s.url} did not finish within {s.timeout:g}s (timeout)")
                    yield line
        except httpx.ConnectTimeout:
            raise GeneratorError(f"cannot connect to {s.url} within {min(CONNECT_TIMEOUT, s.timeout):g}s") from None
        except httpx.ConnectError as exc:
            raise GeneratorError(f"cannot connect to {s.url} ({_cause(exc)}); is the server running?") from None
        except httpx.TimeoutException:
            raise GeneratorError(f"{s.url} did not answer within {s.timeout:g}s (timeout)") from None
        except httpx.HTTPError as exc:
            raise GeneratorError(f"{s.url} failed: {type(exc).__name__}: {_cause(exc)}") from None

    def complete(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The model's reply to ``messages`` (non-streaming)."""
        body = "\n".join(self._lines(messages, stream=False))
        try:
            data = json.loads(body)
            content = data["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise GeneratorError(f"{self.settings.endpoint} sent no chat completion: {body[:200]!r}") from None
        if not isinstance(content, str):
            raise GeneratorError(f"{self.settings.endpoint} sent no text (content {content!r})")
        return content

    def stream(self, messages: Sequence[Mapping[str, str]]) -> Iterator[str]:
        """The model's reply to ``messages`` as text deltas (server-sent events), as they arrive."""
        for line in self._lines(messages, stream=True):
            if not line.startswith("data:"):
                continue
            payload = line[len("data:"):].strip()
            if payload == "[DONE]":
                return
            try:
                data = json.loads(payload)
            except ValueError:
                raise GeneratorError(f"{self.settings.endpoint} sent an unreadable event: {payload[:200]!r}") from None
            if "error" in data:
                raise GeneratorError(f"{self.settings.endpoint} reported: {data['error']}")
            for choice in data.get("choices") or []:
                delta = (choice.get("delta") or {}).get("content")
                if delta:
                    yield delta

    # ------------------------------------------------------------------ answering
    def generate(self, question: str, passages: Sequence[Passage], extractive: Answer,
                 documents: Mapping[str, Document], readings: Sequence[Reading] = (), *,
                 on_delta: Callable[[str], None] | None = None) -> GeneratedAnswer:
        """The generated answer, or ``extractive`` with the reason it was kept.

        ``passages`` are the ranked passages (``extractive.passages``); the best ``max_passages`` are numbered
        in the prompt. ``readings`` are the reader's readings of them for ``question`` (they choose between
        equally good quotes). With ``on_delta`` the reply is streamed and each piece passed to it as it comes
        (unchecked text: show it as a draft until this returns).
        """
        numbered = tuple(passages[:self.settings.max_passages])
        if extractive.abstained:  # the abstention decision stands; the model is not asked to overrule it
            return GeneratedAnswer(extractive, MODE_EXTRACTIVE, passages=numbered, model=self.settings.model)
        if not numbered:
            return GeneratedAnswer(extractive, MODE_EXTRACTIVE, model=self.settings.model)
        started = time.perf_counter()
        messages = build_messages(question, numbered)
        try:
            if on_delta is None:
                raw = self.complete(messages)
            else:
                parts = []
                for delta in self.stream(messages):
                    parts.append(delta)
                    on_delta(delta)
                raw = "".join(parts)
        except GeneratorError as exc:
            seconds = time.perf_counter() - started
            log.warning("generator unavailable, answering with quotes: %s (after %.1fs)", exc, seconds)
            return GeneratedAnswer(extractive, f"{MODE_EXTRACTIVE} (generator unavailable: {exc})",
                                   passages=numbered, model=self.settings.model, seconds=seconds)
        return self.finish(question, numbered, extractive, documents, readings, raw, time.perf_counter() - started)

    def finish(self, question: str, numbered: Sequence[Passage], extractive: Answer,
               documents: Mapping[str, Document], readings: Sequence[Reading], raw: str,
               seconds: float = 0.0) -> GeneratedAnswer:
        """Check the model's text ``raw`` against the ``numbered`` passages and compose the answer."""
        checked = tuple(self.checker.check(split_generated(raw), numbered, documents, readings))
        kept = [s for s in checked if s.supported]
        for s in checked:
            if not s.supported:
                log.info("dropped a generated sentence (%s): %s", s.reason, s.text)
        numbered = tuple(numbered)
        if not kept:
            log.info("no generated sentence was supported (%d written): answering with quotes", len(checked))
            return GeneratedAnswer(extractive, f"{MODE_EXTRACTIVE} (no generated sentence was supported)",
                                   checked, raw, numbered, self.settings.model, seconds)
        spans = {(r.passage.doc_id, r.passage.start): (r.span_start, r.span_end) for r in readings}
        citations: list[Citation] = []
        parts: list[str] = []
        for s in kept:
            sup = s.support
            assert sup is not None
            doc = documents[sup.doc_id]
            passage = numbered[sup.passage_number - 1]
            a, b = spans.get((passage.doc_id, passage.start), (-1, -1))
            inside = sup.start <= a and b <= sup.end
            citations.append(Citation(len(citations) + 1, doc.doc_id, doc.title, doc.section_at(sup.start),
                                      sup.quote, sup.start, sup.end, a if inside else -1, b if inside else -1,
                                      doc.page_at(sup.start)))
            parts.append(f"{s.text} [{len(citations)}]")
        answer = replace(extractive, text=" ".join(parts), citations=citations, abstained=False)
        return GeneratedAnswer(answer, MODE_GENERATED, checked, raw, numbered, self.settings.model, seconds)


def make_generator(config: Any, embedder: Embedder, environ: Mapping[str, str] | None = None) -> Generator | None:
    """The generator ``config`` asks for (its ``generator_*`` fields, then ``$RAG_GENERATOR_*``), or None (off).

    Fields a config does not have count as unset, so this works with any ``Config`` version.
    """
    settings = GeneratorSettings.from_env(
        environ, url=getattr(config, "generator_url", None), model=getattr(config, "generator_model", None),
        timeout=getattr(config, "generator_timeout", None), max_tokens=getattr(config, "generator_max_tokens", None),
        max_passages=getattr(config, "generator_passages", None))
    return Generator(settings, embedder) if settings is not None else None


def _cause(exc: BaseException) -> str:
    """The innermost reason of an httpx error ("[Errno 111] Connection refused")."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return str(exc) or type(exc).__name__
