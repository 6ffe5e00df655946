"""Stage 2: token-aware chunking at sentence boundaries, never across a section.

Chunks are exact slices of their document (``text[start:end] == chunk.text``).
Sentences are packed greedily up to ``chunk_tokens`` tiktoken tokens and
``chunk_max_chars`` characters; the next chunk repeats trailing sentences
worth up to ``chunk_overlap_tokens``.
Runs of body blocks are chunked apart from footnote blocks, so a footnote is
never glued into the middle of a body passage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from .config import Config
from .errors import ConfigError
from .tokens import count_tokens, get_encoding
from .types import Block, Chunk, Document

_SUP = "⁰¹²³⁴⁵⁶⁷⁸⁹"
# A sentence ends at . ! ? (or …) plus closing quotes/brackets and footnote
# markers, followed by whitespace and something that can start a sentence.
_SENTENCE_END = re.compile(
    rf"[.!?…]+[\"'”’)\]*]*[{_SUP}]*(?=\s+[\"'“‘(\[*]*[A-Z0-9{_SUP}\u00c0-\u024f–—-])"
)
# Tokens before a period that do not end a sentence.
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "st", "no", "nos", "vol", "vols", "p", "pp", "fig", "figs", "al",
    "e.g", "i.e", "etc", "vs", "cf", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept",
    "oct", "nov", "dec", "u.s", "u.k", "u.n", "inc", "ltd", "co", "corp", "approx", "ca", "est", "art", "arts",
}
_LIST_ITEM = re.compile(r"^\s*(?:[-*•–—]|\d{1,3}[.)])\s+")
_TERMINAL = tuple(".!?:;\"'”’)…") + tuple(_SUP)


def _is_abbreviation(text: str, period_pos: int) -> bool:
    """True when the period at ``period_pos`` closes an abbreviation or an initial."""
    start = period_pos
    while start > 0 and (text[start - 1].isalpha() or text[start - 1] == "."):
        start -= 1
    word = text[start:period_pos].lower()
    if not word:
        return False
    if word in _ABBREVIATIONS:
        return True
    # Single capital initial ("Paul A. Clapp") or dotted acronym ("U.S.").
    return (len(word) == 1 and text[period_pos - 1].isupper()) or ("." in word and len(word) <= 5)


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Sentence spans (absolute offsets) inside ``text[start:end]``, trimmed of whitespace.

    Boundaries: sentence-final punctuation followed by a capital, digit or
    quote; a line break before a list item; and a paragraph break after a
    line that ends a sentence. A paragraph break after an unfinished line
    (a page break in the middle of a sentence) is not a boundary.
    """
    end = len(text) if end is None else end
    cuts: set[int] = set()
    for m in _SENTENCE_END.finditer(text, start, end):
        period = m.start() + m.group(0).find(".") if "." in m.group(0)[:1] else -1
        if period >= 0 and _is_abbreviation(text, period):
            continue
        cuts.add(m.end())
    # Line-level boundaries.
    pos = start
    while True:
        nl = text.find("\n", pos, end)
        if nl == -1:
            break
        prev = text[text.rfind("\n", 0, nl) + 1:nl].rstrip()
        j = nl
        while j < end and text[j] in " \t\n\u00a0":
            j += 1
        next_line_end = text.find("\n", j, end)
        nxt = text[j:end if next_line_end == -1 else next_line_end]
        blank_line = text.count("\n", nl, j) >= 2
        if prev and nxt and (
            prev.endswith(_TERMINAL) or _LIST_ITEM.match(nxt) or _LIST_ITEM.match(prev)
            or (blank_line and (nxt[:1].isupper() or not prev[-1:].isalnum()) and len(prev) < 80
                and not prev.endswith((",", "-", "–")))
        ):
            cuts.add(nl)
        pos = nl + 1
    spans: list[tuple[int, int]] = []
    last = start
    for cut in sorted(cuts) + [end]:
        a, b = last, cut
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if b > a:
            spans.append((a, b))
        last = cut
    return spans


@dataclass(frozen=True)
class Chunker:
    """Packs sentences into token-bounded chunks. Validates its settings on construction."""

    chunk_tokens: int = 180
    overlap_tokens: int = 0
    encoding: str = "cl100k_base"
    max_chars: int = 1000

    def __post_init__(self) -> None:
        if self.chunk_tokens < 8:
            raise ConfigError(f"chunk_tokens of {self.chunk_tokens} is too small; use 8 or more")
        if not 0 <= self.overlap_tokens < self.chunk_tokens:
            raise ConfigError(f"overlap ({self.overlap_tokens}) must be at least 0 and less than "
                              f"chunk_tokens ({self.chunk_tokens})")
        if self.max_chars < 40:
            raise ConfigError(f"max_chars of {self.max_chars} is too small; use 40 or more")
        get_encoding(self.encoding)  # fail now, offline, if the encoding is unavailable

    @classmethod
    def from_config(cls, config: Config) -> "Chunker":
        return cls(config.chunk_tokens, config.chunk_overlap_tokens, config.encoding, config.chunk_max_chars)

    def settings(self) -> dict:
        return {"chunk_tokens": self.chunk_tokens, "overlap_tokens": self.overlap_tokens,
                "encoding": self.encoding, "max_chars": self.max_chars}

    def _tokens(self, text: str) -> int:
        return count_tokens(text, self.encoding)

    def chunk(self, document: Document) -> list[Chunk]:
        """All chunks of ``document``, in document order."""
        chunks: list[Chunk] = []
        for run in _runs(document.blocks):
            # Split the run as a whole: a sentence broken by a page break spans two paragraphs.
            sentences = self._bounded(document.text, split_sentences(document.text, run[0].start, run[-1].end))
            chunks.extend(self._pack(document, sentences, run[0].section, run[0].kind))
        return chunks

    def _fits(self, text: str) -> bool:
        return len(text) <= self.max_chars and self._tokens(text) <= self.chunk_tokens

    def _bounded(self, text: str, sentences: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
        """Split any sentence longer than a chunk at word boundaries."""
        out: list[tuple[int, int]] = []
        for a, b in sentences:
            if self._fits(text[a:b]):
                out.append((a, b))
                continue
            words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text[a:b])]
            piece_start = 0
            for i in range(1, len(words) + 1):
                if i == len(words) or not self._fits(text[a + words[piece_start][0]:a + words[i][1]]):
                    if i == piece_start:  # a single enormous "word"
                        i += 1
                    out.append((a + words[piece_start][0], a + words[i - 1][1]))
                    piece_start = i
                    if piece_start >= len(words):
                        break
        return out

    def _pack(self, document: Document, sentences: Sequence[tuple[int, int]], section: str, kind: str) -> list[Chunk]:
        text = document.text
        sizes = [self._tokens(text[a:b]) for a, b in sentences]
        chunks: list[Chunk] = []
        i = 0
        while i < len(sentences):
            j = i
            total = sizes[i]
            while j + 1 < len(sentences) and total + sizes[j + 1] <= self.chunk_tokens \
                    and sentences[j + 1][1] - sentences[i][0] <= self.max_chars:
                j += 1
                total += sizes[j]
            start, end = sentences[i][0], sentences[j][1]
            chunks.append(Chunk(document.doc_id, section, start, end, text[start:end], kind, self._tokens(text[start:end])))
            if j + 1 >= len(sentences):
                break
            # Next chunk starts with the trailing sentences that fit in the overlap, but always advances.
            k = j + 1
            overlap = 0
            while k - 1 > i and overlap + sizes[k - 1] <= self.overlap_tokens:
                k -= 1
                overlap += sizes[k]
            i = k
        return chunks


def _runs(blocks: Sequence[Block]) -> list[list[Block]]:
    """Group consecutive blocks of the same section and kind."""
    runs: list[list[Block]] = []
    for block in blocks:
        if runs and runs[-1][-1].section == block.section and runs[-1][-1].kind == block.kind:
            runs[-1].append(block)
        else:
            runs.append([block])
    return runs
