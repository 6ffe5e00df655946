"""Stage 2: token-aware chunking at sentence boundaries, never across a section.

Chunks are exact slices of their document (``text[start:end] == chunk.text``).
Sentences are packed greedily up to ``chunk_tokens`` tiktoken tokens and
``chunk_max_chars`` characters; the next chunk repeats trailing sentences
worth up to ``chunk_overlap_tokens``.
Runs of body blocks are chunked apart from footnote blocks, so a footnote is
never glued into the middle of a body passage.

Sentences end at Latin punctuation followed by a capital, and at the full stops
of scripts written without spaces (Chinese and Japanese 。！？, Burmese ။, Khmer ។
and a few others). A sentence longer than a chunk is cut at whitespace, else
after punctuation, else between character clusters (never inside a base letter
and its combining marks), so no piece exceeds either cap whatever the text.

Every step is linear in the text: the tokenizer only ever sees pieces of at most
``max_chars`` characters or single sentences, and each sentence is encoded once.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable, NamedTuple, Sequence

from .config import Config
from .errors import ConfigError
from .tokens import get_encoding
from .types import Block, Chunk, Document

log = logging.getLogger(__name__)

#: Smallest settings that still make sense: a chunk must hold a few words.
MIN_CHUNK_TOKENS = 8
MIN_CHUNK_CHARS = 40
#: When a sentence must be cut, a cut at whitespace (or after punctuation) is taken only
#: if it keeps at least this share of what fits; a shorter one would leave a scrap of a
#: chunk, so the cut moves to the next weaker kind of boundary.
MIN_CUT_FILL = 0.5
#: A character cluster (base + combining marks) longer than this is not searched for its
#: end: only "Zalgo" text has such clusters, and it is then cut at a code point.
MAX_CLUSTER_CHARS = 32

_SUP = "⁰¹²³⁴⁵⁶⁷⁸⁹"
_LATIN_STOPS = ".!?…"
# A sentence ends at . ! ? (or …) plus closing quotes/brackets and footnote
# markers, followed by whitespace and something that can start a sentence.
# The look-behind starts a match only at the first mark of a run: without it a run
# of n dots costs n^2 steps (every position re-scans the rest of the run).
_SENTENCE_END_BODY = (rf"[{_LATIN_STOPS}]+[\"'”’)\]*]*[{_SUP}]*"
                      rf"(?=\s+[\"'“‘(\[*]*[A-Z0-9{_SUP}\u00c0-\u024f–—-])")
_SENTENCE_END = re.compile(rf"(?<![{_LATIN_STOPS}]){_SENTENCE_END_BODY}")
# The same without the look-behind, for a window that starts inside a run of marks.
_SENTENCE_END_AT = re.compile(_SENTENCE_END_BODY)
#: Full stops of scripts that need no space after them: CJK 。！？｡, Burmese ။, Devanagari
#: । ॥, Ethiopic ።, Arabic ؟ and Urdu ۔, Khmer ។ ៕, Armenian ։. Thai and Lao have none
#: (spaces separate their phrases). Clause marks (，、；： ၊ …) are not sentence ends;
#: they are where an over-long sentence is cut first after whitespace.
SCRIPT_STOPS = "。！？｡။।॥።؟۔។៕։"
_SCRIPT_CLOSERS = "\"'”’)]）］」』】〕〗〙〛〉》"
_SCRIPT_SENTENCE_END = re.compile(rf"[{SCRIPT_STOPS}]+[{re.escape(_SCRIPT_CLOSERS)}]*")
# Tokens before a period that do not end a sentence.
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "st", "no", "nos", "vol", "vols", "p", "pp", "fig", "figs", "al",
    "e.g", "i.e", "etc", "vs", "cf", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept",
    "oct", "nov", "dec", "u.s", "u.k", "u.n", "inc", "ltd", "co", "corp", "approx", "ca", "est", "art", "arts",
}
# A word longer than this is neither an abbreviation nor a dotted acronym (at most 5), so
# the backward scan stops there instead of crossing a long run of letters for every period.
_ABBREVIATION_SCAN = max(max(map(len, _ABBREVIATIONS)), 5) + 1
_LIST_ITEM = re.compile(r"\s*(?:[-*•–—]|\d{1,3}[.)])\s+")  # used with match(), at a line start
_TERMINAL = tuple(".!?:;\"'”’)…") + tuple(_SUP)
_BLANK = " \t\n\u00a0"
_ZWJ = "\u200d"
# Characters that continue the cluster before them although they are not combining marks.
_EXTENDERS = frozenset("\u200d\u0e33\u0eb3")  # zero-width joiner, Thai and Lao SARA AM
_VIRAMA = 9  # canonical combining class of viramas (Burmese ္ stacks the next consonant)


def _is_abbreviation(text: str, period_pos: int) -> bool:
    """True when the period at ``period_pos`` closes an abbreviation or an initial."""
    start = period_pos
    floor = max(0, period_pos - _ABBREVIATION_SCAN)
    while start > floor and (text[start - 1].isalpha() or text[start - 1] == "."):
        start -= 1
    if start == floor and floor > 0 and (text[start - 1].isalpha() or text[start - 1] == "."):
        return False  # a longer word: no abbreviation is that long
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
    quote; a full stop of a script written without spaces (see ``SCRIPT_STOPS``);
    a line break before a list item; and a paragraph break after a line that
    ends a sentence. A paragraph break after an unfinished line (a page break in
    the middle of a sentence) is not a boundary.
    """
    end = len(text) if end is None else end
    cuts: set[int] = set()
    pos = start
    if 0 < start < end and text[start - 1] in _LATIN_STOPS:
        # The look-behind would hide a run of marks that the window starts inside.
        m = _SENTENCE_END_AT.match(text, start, end)
        if m:
            if not (m.group(0)[:1] == "." and _is_abbreviation(text, m.start())):
                cuts.add(m.end())
            pos = m.end()
    for m in _SENTENCE_END.finditer(text, pos, end):
        period = m.start() + m.group(0).find(".") if "." in m.group(0)[:1] else -1
        if period >= 0 and _is_abbreviation(text, period):
            continue
        cuts.add(m.end())
    for m in _SCRIPT_SENTENCE_END.finditer(text, start, end):
        cuts.add(m.end())
    # Line-level boundaries.
    pos = start
    while True:
        nl = text.find("\n", pos, end)
        if nl == -1:
            break
        prev = text[text.rfind("\n", 0, nl) + 1:nl].rstrip()
        j = nl
        while j < end and text[j] in _BLANK:
            j += 1
        next_line_end = text.find("\n", j, end)
        next_line_end = end if next_line_end == -1 else next_line_end
        blank_line = text.count("\n", nl, j) >= 2
        if prev and j < next_line_end and (
            prev.endswith(_TERMINAL) or _LIST_ITEM.match(text, j, next_line_end) or _LIST_ITEM.match(prev)
            or (blank_line and (text[j].isupper() or not prev[-1:].isalnum()) and len(prev) < 80
                and not prev.endswith((",", "-", "–")))
        ):
            cuts.add(nl)
        # Every further newline before j ends a blank line, which is never a boundary:
        # skipping them keeps a long run of blank lines linear instead of quadratic.
        pos = max(nl + 1, j)
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


def _ends_at_script_stop(text: str, start: int, end: int) -> bool:
    """Does ``text[start:end]`` end with a ``SCRIPT_STOPS`` mark (and closing quotes)?"""
    while end > start and text[end - 1] in _SCRIPT_CLOSERS:
        end -= 1
    return end > start and text[end - 1] in SCRIPT_STOPS


def _is_cluster_start(char: str) -> bool:
    """False for characters that belong to the cluster before them (combining marks, joiners)."""
    return not (unicodedata.category(char)[0] == "M" or char in _EXTENDERS
                or "\U0001f3fb" <= char <= "\U0001f3ff"  # emoji skin-tone modifiers
                or "\U000e0020" <= char <= "\U000e007f"  # emoji tag sequences (flags)
                or "\u1160" <= char <= "\u11ff")  # Hangul medial vowels and final consonants


def _is_regional_indicator(char: str) -> bool:
    return "\U0001f1e6" <= char <= "\U0001f1ff"


def _is_boundary(text: str, i: int) -> bool:
    """May ``text`` be cut before index ``i`` without splitting a character cluster?"""
    if i <= 0 or i >= len(text):
        return True
    char, before = text[i], text[i - 1]
    if not _is_cluster_start(char) or before == _ZWJ:
        return False
    if "\ud800" <= before <= "\udbff" and "\udc00" <= char <= "\udfff":
        return False  # a surrogate pair (text decoded with surrogatepass)
    if _is_regional_indicator(char) and _is_regional_indicator(before):
        # Flags are pairs of regional indicators: cut only after an even number of them.
        run = 1
        while run < MAX_CLUSTER_CHARS and i - run - 1 >= 0 and _is_regional_indicator(text[i - run - 1]):
            run += 1
        return run % 2 == 0
    # A virama before a letter stacks it into a conjunct (Burmese ္, Indic scripts).
    return not (unicodedata.combining(before) == _VIRAMA and char.isalpha())


def _boundary_at_or_before(text: str, i: int, floor: int) -> int:
    """The last cluster boundary in ``(floor, i]``, or ``floor`` when there is none.

    A cluster longer than ``MAX_CLUSTER_CHARS`` is cut at a code point (never
    inside a surrogate pair), so pathological text still gets cut.
    """
    j = i
    while j > floor and j > i - MAX_CLUSTER_CHARS:
        if _is_boundary(text, j):
            return j
        j -= 1
    if j == floor:
        return floor
    if "\ud800" <= text[i - 1] <= "\udbff" and i - 1 > floor:
        return i - 1
    return i


def _boundary_after(text: str, i: int, ceiling: int) -> int | None:
    """The first cluster boundary in ``(i, ceiling]``, or None."""
    j = i + 1
    while j <= ceiling and j <= i + MAX_CLUSTER_CHARS:
        if _is_boundary(text, j):
            return j
        j += 1
    if j > ceiling:
        return None
    cut = i + 1
    return cut + 1 if "\ud800" <= text[cut - 1] <= "\udbff" and cut < ceiling else cut


class _Unit(NamedTuple):
    """A sentence, or a piece of one, that fits a chunk on its own."""

    start: int
    end: int
    tokens: int
    #: A chunk holding an exact unit is kept within ``chunk_tokens`` with its joins counted: true of
    #: pieces of a cut sentence and of sentences ended by a ``SCRIPT_STOPS`` mark. Joined text can
    #: take more tokens than its parts (in cl100k " မ" is 3 tokens, "မ" 2; " The" and "The" are 1).
    #: Whole Latin-script sentences keep the historical packing by the sum of their parts (a chunk of
    #: them may be a token over), so the seeds and existing indexes chunk exactly as before.
    exact: bool


@dataclass(frozen=True)
class Chunker:
    """Packs sentences into token-bounded chunks. Validates its settings on construction."""

    chunk_tokens: int = 180
    overlap_tokens: int = 0
    encoding: str = "cl100k_base"
    max_chars: int = 1000

    def __post_init__(self) -> None:
        for name in ("chunk_tokens", "overlap_tokens", "max_chars"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
        if self.chunk_tokens < MIN_CHUNK_TOKENS:
            raise ConfigError(f"chunk_tokens of {self.chunk_tokens} is too small; use {MIN_CHUNK_TOKENS} or more")
        if not 0 <= self.overlap_tokens < self.chunk_tokens:
            raise ConfigError(f"overlap ({self.overlap_tokens}) must be at least 0 and less than "
                              f"chunk_tokens ({self.chunk_tokens})")
        if self.max_chars < MIN_CHUNK_CHARS:
            raise ConfigError(f"max_chars of {self.max_chars} is too small; use {MIN_CHUNK_CHARS} or more")
        get_encoding(self.encoding)  # fail now, offline, if the encoding is unavailable

    @classmethod
    def from_config(cls, config: Config) -> "Chunker":
        return cls(config.chunk_tokens, config.chunk_overlap_tokens, config.encoding, config.chunk_max_chars)

    def settings(self) -> dict:
        return {"chunk_tokens": self.chunk_tokens, "overlap_tokens": self.overlap_tokens,
                "encoding": self.encoding, "max_chars": self.max_chars}

    def _tokens(self, text: str) -> int:
        # encode_ordinary is encode(disallowed_special=()) without the special-token scan.
        return len(get_encoding(self.encoding).encode_ordinary(text))

    def chunk(self, document: Document) -> list[Chunk]:
        """All chunks of ``document``, in document order."""
        chunks: list[Chunk] = []
        for run in _runs(document.blocks):
            # Split the run as a whole: a sentence broken by a page break spans two paragraphs.
            units = self._bounded(document.text, split_sentences(document.text, run[0].start, run[-1].end))
            chunks.extend(self._pack(document, units, run[0].section, run[0].kind))
        return chunks

    def _bounded(self, text: str, sentences: Iterable[tuple[int, int]]) -> list[_Unit]:
        """The sentences with their token counts; one longer than a chunk is cut into pieces that fit."""
        out: list[_Unit] = []
        for a, b in sentences:
            if b - a <= self.max_chars:
                tokens = self._tokens(text[a:b])
                if tokens <= self.chunk_tokens:
                    out.append(_Unit(a, b, tokens, _ends_at_script_stop(text, a, b)))
                    continue
            pieces = self._split_long(text, a, b)
            log.debug("sentence of %d characters at %d cut into %d pieces", b - a, a, len(pieces))
            out.extend(pieces)
        return out

    def _split_long(self, text: str, a: int, b: int) -> list[_Unit]:
        """Cut ``text[a:b]`` into pieces within both caps: at whitespace, else after punctuation,
        else between character clusters (see ``MIN_CUT_FILL``).

        Whenever every word fits a chunk on its own this is the historical greedy
        packing of whole words. Work per piece is bounded by ``max_chars``, so a
        sentence of any length (a 50 MB line without a space) costs linear time.
        """
        pieces: list[_Unit] = []
        pos = a
        hint = self.max_chars
        while pos < b:
            limit = min(b, pos + self.max_chars)
            reach, reach_tokens = self._reach(text, pos, limit, b, hint)
            cut = reach if reach == b else self._weaker_cut(text, pos, reach, b)
            tokens = reach_tokens if cut == reach else self._tokens(text[pos:cut])
            if tokens > self.chunk_tokens:  # token counts are not monotonic in rare cases
                cut, tokens = reach, reach_tokens
            end = cut
            while end > pos and text[end - 1].isspace():
                end -= 1
            pieces.append(_Unit(pos, end, tokens if end == cut else self._tokens(text[pos:end]), True))
            # The next piece is likely about as long: encode a window of twice that, not max_chars.
            hint = min(self.max_chars, 2 * (cut - pos) + MIN_CHUNK_CHARS)
            pos = cut
            while pos < b and text[pos].isspace():
                pos += 1
        return pieces

    def _reach(self, text: str, pos: int, limit: int, b: int, hint: int) -> tuple[int, int]:
        """The farthest cluster boundary ``e`` in ``(pos, limit]`` with ``text[pos:e]`` within both caps,
        and its token count.

        One encoding of a window guesses it (where the token budget runs out), a
        check or two confirms it, and a binary search takes over when the guess
        is off. ``hint`` sizes the window from the previous piece, so short
        pieces (CJK: one or two tokens a character) do not each encode ``max_chars``.
        """
        enc = get_encoding(self.encoding)
        budget = self.chunk_tokens
        window_end = min(limit, pos + max(hint, MIN_CHUNK_CHARS))
        ids = enc.encode_ordinary(text[pos:window_end])
        if len(ids) <= budget and window_end < limit:
            window_end = limit
            ids = enc.encode_ordinary(text[pos:window_end])
        if len(ids) <= budget:
            guess = window_end
        else:
            # Characters covered by the first ``budget`` tokens (a character split between tokens is left out).
            guess = pos + len(enc.decode_bytes(ids[:budget]).decode("utf-8", "ignore"))
        lo, lo_tokens, hi = pos, 0, limit + 1  # text[pos:lo] fits; text[pos:hi] does not (hi: exclusive bound)
        first = self._snap_down(text, max(guess, pos + 1), pos, limit, b)
        if first is None:
            first = self._snap_up(text, pos, limit, b)
        if first is not None:
            tokens = len(ids) if first == window_end else self._tokens(text[pos:first])
            if tokens <= budget:
                lo, lo_tokens = first, tokens
                after = self._snap_up(text, first, limit, b)
                if after is None:
                    hi = lo  # nothing beyond: done
                else:
                    tokens = self._tokens(text[pos:after])
                    if tokens > budget:
                        hi = after
                    else:
                        lo, lo_tokens = after, tokens
            else:
                hi = first
        while hi > lo:
            mid = self._snap_down(text, (lo + hi) // 2, lo, limit, b)
            if mid is None or mid >= hi:
                mid = self._snap_up(text, (lo + hi) // 2, limit, b)
            if mid is None or mid >= hi:
                break
            tokens = self._tokens(text[pos:mid])
            if tokens <= budget:
                lo, lo_tokens = mid, tokens
            else:
                hi = mid
        if lo == pos:  # not even one code point fits: impossible for chunk_tokens >= MIN_CHUNK_TOKENS
            lo = pos + 1
            lo_tokens = self._tokens(text[pos:lo])
        return lo, lo_tokens

    @staticmethod
    def _snap_down(text: str, i: int, floor: int, limit: int, b: int) -> int | None:
        """The last boundary in ``(floor, min(i, limit)]`` (the sentence end ``b`` is one), or None."""
        i = min(i, limit)
        if i == b:
            return b
        j = _boundary_at_or_before(text, i, floor)
        return j if j > floor else None

    @staticmethod
    def _snap_up(text: str, i: int, limit: int, b: int) -> int | None:
        """The first boundary in ``(i, limit]`` (the sentence end ``b`` is one), or None."""
        j = _boundary_after(text, i, limit)
        if j is None and limit == b and i < b:
            return b
        return j

    def _weaker_cut(self, text: str, pos: int, reach: int, b: int) -> int:
        """Where to end the piece ``text[pos:reach]`` (which fits, and is not the rest of the sentence).

        At the last whitespace when the word straddling ``reach`` fits a piece of
        its own (so a word is never cut that need not be) or when the cut keeps
        ``MIN_CUT_FILL`` of the piece; else after the last punctuation mark that
        keeps that much; else at ``reach`` itself, a cluster boundary.
        """
        enough = pos + MIN_CUT_FILL * (reach - pos)
        word_start = reach
        if not text[reach].isspace():
            while word_start > pos and not text[word_start - 1].isspace():
                word_start -= 1
        space_cut = word_start
        while space_cut > pos and text[space_cut - 1].isspace():
            space_cut -= 1
        if space_cut > pos:
            if space_cut == reach or space_cut >= enough or self._word_fits(text, word_start, b):
                return space_cut
        j = reach
        while j > pos and j >= enough:
            if unicodedata.category(text[j - 1])[0] == "P" and _is_boundary(text, j):
                return j
            j -= 1
        return reach

    def _word_fits(self, text: str, start: int, b: int) -> bool:
        """Does the whitespace-delimited word at ``start`` fit a piece of its own?"""
        end = start
        stop = min(b, start + self.max_chars + 1)  # a longer word does not fit: look no further
        while end < stop and not text[end].isspace():
            end += 1
        return end - start <= self.max_chars and self._tokens(text[start:end]) <= self.chunk_tokens

    def _pack(self, document: Document, units: Sequence[_Unit], section: str, kind: str) -> list[Chunk]:
        text = document.text
        chunks: list[Chunk] = []
        i = 0
        while i < len(units):
            j = i
            total = units[i].tokens
            while j + 1 < len(units) and total + units[j + 1].tokens <= self.chunk_tokens \
                    and units[j + 1].end - units[i].start <= self.max_chars:
                j += 1
                total += units[j].tokens
            start, end = units[i].start, units[j].end
            tokens = units[i].tokens if j == i else self._tokens(text[start:end])
            # Joined text can take a token more than its parts (see _Unit.exact).
            while tokens > self.chunk_tokens and j > i and any(u.exact for u in units[i:j + 1]):
                j -= 1
                end = units[j].end
                tokens = units[i].tokens if j == i else self._tokens(text[start:end])
            chunks.append(Chunk(document.doc_id, section, start, end, text[start:end], kind, tokens))
            if j + 1 >= len(units):
                break
            # Next chunk starts with the trailing sentences that fit in the overlap, but always advances.
            k = j + 1
            overlap = 0
            while k - 1 > i and overlap + units[k - 1].tokens <= self.overlap_tokens:
                k -= 1
                overlap += units[k].tokens
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
