"""From raw LLM responses to description sentences: split, drop what is not a description, deduplicate.

``unibind kb generate`` asks several prompts many times per category; the answers carry markdown, numbering,
refusals, repeats and near-repeats. :func:`clean_category` turns one category's answers into the sentences the
ingest stores (one record each), and counts in a :class:`CleaningReport` what every step dropped, so that a
run can say where its responses went (``responses -> sentences -> drops + kept``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np

from unibind.indexer.readers.text import text_hash
from unibind.schema.errors import InvalidInput

log = logging.getLogger(__name__)

NAME_RULES = ("any", "must", "never")
FORMS = ("sentences", "bullets")


@dataclass(frozen=True)
class CleaningConfig:
    """How strictly responses are cleaned.

    ``names``: ``"any"`` keeps every sentence, ``"must"`` only those naming the category, ``"never"`` only those
    not naming it (descriptions that must not leak the class name). ``near_duplicate``: the cosine at or above
    which a sentence is a near-duplicate of an earlier kept one (None: no near-duplicate removal).
    ``min_words``: sentences with fewer words are fragments, dropped as empty.
    """

    names: str = "any"
    near_duplicate: float | None = 0.95
    min_words: int = 3

    def __post_init__(self) -> None:
        if self.names not in NAME_RULES:
            raise InvalidInput(f"names must be one of {', '.join(NAME_RULES)}, not {self.names!r}")
        nd = self.near_duplicate
        if nd is not None and (isinstance(nd, bool) or not isinstance(nd, (int, float)) or not 0.0 < float(nd) <= 1.0):
            raise InvalidInput(f"near_duplicate must be a cosine in (0, 1] or None, not {nd!r}")
        if isinstance(self.min_words, bool) or not isinstance(self.min_words, int) or self.min_words < 0:
            raise InvalidInput(f"min_words must be an integer >= 0, not {self.min_words!r}")


@dataclass
class CleaningReport:
    """Counts of one or more categories' cleaning. ``sentences`` equals the sum of every drop and ``kept``;
    ``cut`` counts sentences shortened (kept or dropped later), not a drop."""

    responses: int = 0
    sentences: int = 0
    empty: int = 0
    refusals: int = 0
    unnamed: int = 0
    named: int = 0
    cut: int = 0
    exact_duplicates: int = 0
    near_duplicates: int = 0
    kept: int = 0

    def add(self, other: CleaningReport) -> CleaningReport:
        """Add ``other``'s counts to this report (in place); returns this report."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @property
    def dropped(self) -> int:
        """Every sentence removed, by any step."""
        return self.empty + self.refusals + self.unnamed + self.named + self.exact_duplicates + self.near_duplicates


# --- splitting ------------------------------------------------------------------------------------------------

_BULLET = re.compile(r"^\s*(?:[-*•–—]|\d{1,3}[.)]|\(\d{1,3}\)|\(?[a-zA-Z]\))\s+")
_EMPHASIS = re.compile(r"\*\*|__")
_DQUOTES = "\"“”„«»"
_SQUOTES = "'‘’"
_OPEN_CLOSE = {'"': '"', "“": "”", "”": "”", "„": "“", "«": "»", "'": "'", "‘": "’", "’": "’"}
_END = ".!?"
# Words whose final full stop does not end a sentence (compared lower-cased, with the full stop).
_ABBREVIATIONS = frozenset({
    "e.g.", "i.e.", "etc.", "vs.", "cf.", "approx.", "ca.", "mr.", "mrs.", "ms.", "dr.", "st.", "jr.", "sr.",
    "fig.", "al.", "esp.", "incl.",
})
_BOUNDARY = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s)")
_WORD = re.compile(r"\w")
_NUMBERING = re.compile(r"\(?(?:\d{1,3}|[a-zA-Z])[.)]")  # "1." or "a)" alone: a list marker, not a sentence


def _strip_marker(line: str) -> str:
    """``line`` without its leading bullets and numbering (repeated, as in "- 1. ...")."""
    previous = None
    while previous != line:
        previous = line
        line = _BULLET.sub("", line, count=1)
    return line.strip()


def _strip_quotes(s: str) -> str:
    """``s`` without surrounding quotes (straight or curly), also when the closing quote stands before or after
    the final punctuation, and without a stray unbalanced double quote at either end (a quote that a sentence
    split cut in two)."""
    s = s.strip()
    while len(s) >= 2 and s[0] in _OPEN_CLOSE:
        close = _OPEN_CLOSE[s[0]]
        body = s.rstrip(_END)
        tail = s[len(body):]
        if body.endswith(close) and len(body) >= 2:
            s = (body[1:-1] + tail).strip()
        elif s.endswith(close) and len(s) >= 2:
            s = s[1:-1].strip()
        else:
            break
    if sum(s.count(q) for q in _DQUOTES) % 2 == 1:
        if s[:1] in _DQUOTES:
            s = s[1:].lstrip()
        else:
            body = s.rstrip(_END)
            if body[-1:] in _DQUOTES:
                s = (body[:-1] + s[len(body):]).strip()
    return s


def _split_sentences(text: str) -> list[str]:
    """``text`` cut after ., ! or ? (and any closing quotes or brackets) followed by whitespace, except after an
    abbreviation such as "e.g." (decimals never split: "1.5" has no space after its point)."""
    out: list[str] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        piece = text[start:m.end()].strip()
        word = piece.split()[-1] if piece else ""
        if word.lower().rstrip("\"'”’)]") in _ABBREVIATIONS or _NUMBERING.fullmatch(piece):
            continue
        out.append(text[start:m.end()])
        start = m.end()
    out.append(text[start:])
    return [p.strip() for p in out if p.strip()]


def _close(sentence: str) -> str:
    """``sentence`` ending in ., ! or ?: trailing commas, colons and semicolons become "."; "." is appended when
    there is no end punctuation (as CuPL closes an answer it stopped at its first full stop)."""
    s = sentence.rstrip().rstrip(",;:").rstrip()
    if not s:
        return s
    body = s.rstrip("\"'”’)]")
    if body[-1:] in _END:
        return s
    return s + "."


def _sentences(text: str) -> list[str]:
    out: list[str] = []
    for raw in text.splitlines():
        line = _EMPHASIS.sub("", _strip_marker(raw))
        line = _strip_quotes(line)
        for part in _split_sentences(line):
            sentence = _close(_strip_quotes(_strip_marker(part)))
            if _WORD.search(sentence):
                out.append(sentence)
    return out


_WHICH = ("has", "often", "typically", "may", "can")


def descriptor_sentence(descriptor: str, category: str) -> str:
    """DCLIP's ``make_descriptor_sentence``: a descriptor as a sentence about ``category``."""
    d = descriptor.strip().rstrip(".,;:").strip()
    first = d.split(maxsplit=1)[0].lower() if d else ""
    if first in ("a", "an"):
        return f"{category}, which is {d}."
    if first in _WHICH:
        return f"{category}, which {d}."
    if first == "used":
        return f"{category}, which is {d}."
    return f"{category}, which has {d}."


def _bullets(text: str, category: str) -> list[str]:
    out: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("Q:"):  # the model went on to ask itself the next few-shot question
            break
        d = _strip_quotes(_EMPHASIS.sub("", _strip_marker(line)))
        if _WORD.search(d):
            out.append(descriptor_sentence(d, category))
    return out


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]")


def split_response(text: str, form: str, category: str) -> list[str]:
    """The sentences of one response.

    ``"sentences"``: markdown bullets, numbering, surrounding quotes and ``**`` emphasis removed, each line split
    into sentences, each sentence ending in punctuation. ``"bullets"`` (DCLIP): every non-empty line up to the
    first "Q:" line is one descriptor, made a sentence about ``category`` as DCLIP does.
    """
    text = _CONTROL.sub("", text)  # control characters and U+FFFD (bytes a model emitted that are not UTF-8)
    if form == "sentences":
        return _sentences(text)
    if form == "bullets":
        return _bullets(text, category)
    raise InvalidInput(f"form must be one of {', '.join(FORMS)}, not {form!r}")


# --- what to drop ---------------------------------------------------------------------------------------------

_REFUSAL_START = re.compile(
    r"^\W*(?:i'm sorry|i am sorry|as an ai\b|i cannot\b|i can't\b|i am unable|i'm unable|i'm not able|i am not able"
    r"|i don't have|i do not have|sure, here|here are\b|certainly!)",
    re.IGNORECASE,
)
_REFUSAL_ANYWHERE = re.compile(r"\bas an ai language model\b", re.IGNORECASE)


def is_refusal(sentence: str) -> bool:
    """True for a refusal or meta answer ("I'm sorry", "As an AI", "Here are ...") rather than a description."""
    s = sentence.replace("’", "'").replace("‘", "'")
    return bool(_REFUSAL_START.search(s) or _REFUSAL_ANYWHERE.search(s))


def _name_variants(category: str) -> list[str]:
    base = category.replace("_", " ").strip()
    variants = [base]
    head = base.split("(", 1)[0].strip()
    if head and head != base:
        variants.append(head)
    return [v for v in variants if v]


def names_category(sentence: str, category: str) -> bool:
    """True if ``sentence`` names ``category``: a case-insensitive whole-word match of the name or its plural
    (+s, +es), with underscores read as spaces, and also of the part before a parenthesis ("crane (bird)")."""
    for v in _name_variants(category):
        words = r"\s+".join(re.escape(w) for w in v.split())
        if re.search(rf"(?<!\w){words}(?:s|es)?(?!\w)", sentence, re.IGNORECASE):
            return True
    return False


def _words(sentence: str) -> int:
    return sum(1 for w in sentence.split() if _WORD.search(w))


# --- near duplicates ------------------------------------------------------------------------------------------

def near_duplicates(vectors: np.ndarray, threshold: float, *, block: int = 1024) -> np.ndarray:
    """Greedy near-duplicate removal: the keep mask of ``vectors`` ([N, d] unit rows in priority order), where a
    row is dropped when its cosine with an earlier *kept* row is >= ``threshold``.

    Block-wise float32 matrix products find the candidates; every product within float32's rounding bound of
    the threshold is recomputed in float64, so the result equals the plain O(N^2) loop in float64.
    """
    if not (isinstance(threshold, (int, float)) and not isinstance(threshold, bool) and 0.0 < threshold <= 1.0):
        raise InvalidInput(f"near-duplicate threshold must be a cosine in (0, 1], not {threshold!r}")
    v = np.asarray(vectors)
    if v.ndim != 2:
        raise ValueError(f"near_duplicates: expected an [N, d] array, got shape {v.shape}")
    n, d = v.shape
    keep = np.zeros(n, dtype=bool)
    if n == 0:
        return keep
    v32 = np.ascontiguousarray(v, dtype=np.float32)
    norm = float(np.max(np.linalg.norm(v32.astype(np.float64), axis=1)))
    # |float32 dot - exact| <= (d + 2) * u * |x| |y| (u = 2^-24); doubled for the products' own rounding.
    margin = 2.0 * (d + 2) * 2.0**-24 * max(norm, 1.0) ** 2
    lo, hi = threshold - margin, threshold + margin

    def exact(row: int, others: np.ndarray) -> bool:
        """True if row ``row`` is at or above the threshold with any of rows ``others`` (in float64)."""
        sims = v32[others].astype(np.float64) @ v32[row].astype(np.float64)
        return bool(np.any(sims >= threshold))

    kept_rows = np.empty(n, dtype=np.int64)  # indices of the kept rows, in order
    kept_vecs = np.empty((n, d), dtype=np.float32)  # their vectors, contiguous for the products
    n_kept = 0
    for start in range(0, n, block):
        stop = min(start + block, n)
        b = v32[start:stop]
        size = stop - start
        ok = np.ones(size, dtype=bool)  # not a near-duplicate of a kept row (so far)
        if n_kept:
            s = b @ kept_vecs[:n_kept].T
            ok = ~np.any(s >= hi, axis=1)
            for r in np.flatnonzero(ok & np.any(s >= lo, axis=1)):
                ok[r] = not exact(start + int(r), kept_rows[:n_kept][s[r] >= lo])
        # Within the block: a row with no earlier row of the block near it keeps its state; the others are
        # settled in order, against the earlier rows of the block still kept.
        inner = b @ b.T
        near = np.tril(inner >= lo, k=-1)
        for r in np.flatnonzero(ok & near.any(axis=1)):
            cols = np.flatnonzero(near[r, :r] & ok[:r])
            if not cols.size:
                continue
            ok[r] = not (np.any(inner[r, cols] >= hi) or exact(start + int(r), start + cols))
        mine = start + np.flatnonzero(ok)
        keep[mine] = True
        kept_rows[n_kept:n_kept + len(mine)] = mine
        kept_vecs[n_kept:n_kept + len(mine)] = v32[mine]
        n_kept += len(mine)
    return keep


# --- the pipeline ---------------------------------------------------------------------------------------------

Splitter = Callable[[str, str], list[str]]


def clean_category(
    category: str,
    responses: Sequence[tuple[str, dict]],
    *,
    form: str | Splitter,
    config: CleaningConfig,
    fit: Callable[[str], str] | None = None,
    embed: Callable[[list[str]], np.ndarray] | None = None,
    report: CleaningReport,
) -> list[tuple[str, dict]]:
    """One category's responses (raw text, provenance) as (sentence, provenance) pairs, in first-seen order.

    Steps, each drop counted in ``report``: split (``form`` is the prompt set's form, or a callable
    ``(text, category) -> sentences``) -> fragments under ``config.min_words`` words (empty) -> refusals ->
    the name rule -> ``fit`` (the encoder's cut to its context length; a changed text counts as cut) -> exact
    duplicates by :func:`text_hash` (the first kept) -> near-duplicates by the cosine of ``embed``'s unit vectors
    (skipped when ``embed`` or ``config.near_duplicate`` is None). Each sentence carries a copy of its response's
    provenance (model, prompt, seed, sample).
    """
    if not callable(form) and form not in FORMS:
        raise InvalidInput(f"form must be one of {', '.join(FORMS)}, not {form!r}")
    mine = CleaningReport(responses=len(responses))
    seen: set[str] = set()
    out: list[tuple[str, dict]] = []
    for text, provenance in responses:
        parts = form(text, category) if callable(form) else split_response(text, form, category)
        mine.sentences += len(parts)
        for sentence in parts:
            sentence = sentence.strip()
            if not sentence or _words(sentence) < config.min_words:
                mine.empty += 1
                continue
            if is_refusal(sentence):
                mine.refusals += 1
                continue
            if config.names != "any":
                named = names_category(sentence, category)
                if config.names == "must" and not named:
                    mine.unnamed += 1
                    continue
                if config.names == "never" and named:
                    mine.named += 1
                    continue
            if fit is not None:
                fitted = fit(sentence)
                if fitted != sentence:
                    mine.cut += 1
                    sentence = fitted.strip()
                    if not sentence:
                        mine.empty += 1
                        continue
            h = text_hash(sentence)
            if h in seen:
                mine.exact_duplicates += 1
                continue
            seen.add(h)
            out.append((sentence, dict(provenance)))
    if embed is not None and config.near_duplicate is not None and len(out) > 1:
        vectors = np.asarray(embed([s for s, _ in out]), dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(out):
            raise ValueError(f"embed returned shape {vectors.shape} for {len(out)} sentences")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms > 0, norms, 1.0)
        mask = near_duplicates(vectors, float(config.near_duplicate))
        mine.near_duplicates += int(np.count_nonzero(~mask))
        out = [pair for pair, k in zip(out, mask) if k]
    mine.kept = len(out)
    log.debug("cleaned %r: %s", category, mine.as_dict())
    report.add(mine)
    return out
