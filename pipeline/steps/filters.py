"""Quality filters of the FineWeb recipe, one small class per published filter family.

Each filter is called with a `Document` and returns the name of the rule that rejects it, or None to keep
it; it records what it measured on the way (`Document.measure`, kept when the recipe asks for measures). Thresholds are constructor arguments whose defaults are the published values (FineWeb's settings of
datatrove's filters); passing None switches a single rule off. Differences from datatrove, on purpose:
words and sentences are split with Unicode regular expressions instead of NLTK (whose models would be a
run-time download), and Gopher's English stop-word rule only applies to documents identified as English,
so that keeping other languages does not silently drop all of them.
"""

from __future__ import annotations

import itertools
import re
import string
from collections.abc import Iterable

from pipeline.common.schema import Document
from pipeline.steps.code import CODE_FILTER_CLASSES
from pipeline.steps.ngrams import NgramIndex, duplicated_ngram_chars, duplicates, split_words, top_ngram_chars

_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")
_PARAGRAPHS = re.compile(r"\n{2,}")
_PUNCTUATION = set(string.punctuation)


class GopherRepetitionFilter:
    """Repetition rules of Gopher (Rae et al. 2021, table A1)."""

    name = "gopher_repetition"

    def __init__(
        self,
        dup_line_frac: float | None = 0.3,
        dup_para_frac: float | None = 0.3,
        dup_line_char_frac: float | None = 0.2,
        dup_para_char_frac: float | None = 0.2,
        top_n_grams: Iterable[tuple[int, float]] = ((2, 0.2), (3, 0.18), (4, 0.16)),
        dup_n_grams: Iterable[tuple[int, float]] = ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)),
    ):
        self.dup_line_frac = dup_line_frac
        self.dup_para_frac = dup_para_frac
        self.dup_line_char_frac = dup_line_char_frac
        self.dup_para_char_frac = dup_para_char_frac
        self.top_n_grams = tuple((int(n), float(share)) for n, share in top_n_grams)
        self.dup_n_grams = tuple((int(n), float(share)) for n, share in dup_n_grams)

    def __call__(self, doc: Document) -> str | None:
        text = doc.text
        if not text:
            return "empty"
        paragraphs = _PARAGRAPHS.split(text.strip())
        count, chars = duplicates(paragraphs)
        doc.measure("gopher_repetition.dup_para_frac", count / len(paragraphs))
        doc.measure("gopher_repetition.dup_para_char_frac", chars / len(text))
        if self.dup_para_frac is not None and count / len(paragraphs) > self.dup_para_frac:
            return "dup_para_frac"
        if self.dup_para_char_frac is not None and chars / len(text) > self.dup_para_char_frac:
            return "dup_para_char_frac"
        lines = text.splitlines()
        count, chars = duplicates(lines)
        doc.measure("gopher_repetition.dup_line_frac", count / len(lines))
        doc.measure("gopher_repetition.dup_line_char_frac", chars / len(text))
        if self.dup_line_frac is not None and count / len(lines) > self.dup_line_frac:
            return "dup_line_frac"
        if self.dup_line_char_frac is not None and chars / len(text) > self.dup_line_char_frac:
            return "dup_line_char_frac"
        ngrams = NgramIndex(split_words(text))
        for n, fraction in self.top_n_grams:
            level = ngrams.level(n)
            share = top_ngram_chars(level) / len(text) if level else 0.0
            doc.measure(f"gopher_repetition.top_{n}_gram", share)
            if share > fraction:
                return f"top_{n}_gram"
        for n, fraction in self.dup_n_grams:
            level = ngrams.level(n)
            share = duplicated_ngram_chars(level, n) / len(text) if level else 0.0
            doc.measure(f"gopher_repetition.duplicated_{n}_n_grams", share)
            if share > fraction:
                return f"duplicated_{n}_n_grams"
        return None


GOPHER_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")


class GopherQualityFilter:
    """Quality rules of Gopher (Rae et al. 2021)."""

    name = "gopher_quality"

    def __init__(
        self,
        min_doc_words: int | None = 50,
        max_doc_words: int | None = 100_000,
        min_avg_word_length: float | None = 3,
        max_avg_word_length: float | None = 10,
        max_symbol_word_ratio: float | None = 0.1,
        max_bullet_lines_ratio: float | None = 0.9,
        max_ellipsis_lines_ratio: float | None = 0.3,
        max_non_alpha_words_ratio: float | None = 0.8,
        min_stop_words: int | None = 2,
        stop_words: Iterable[str] = GOPHER_STOP_WORDS,
        stop_word_languages: Iterable[str] | None = ("en",),
    ):
        self.min_doc_words = min_doc_words
        self.max_doc_words = max_doc_words
        self.min_avg_word_length = min_avg_word_length
        self.max_avg_word_length = max_avg_word_length
        self.max_symbol_word_ratio = max_symbol_word_ratio
        self.max_bullet_lines_ratio = max_bullet_lines_ratio
        self.max_ellipsis_lines_ratio = max_ellipsis_lines_ratio
        self.max_non_alpha_words_ratio = max_non_alpha_words_ratio
        self.min_stop_words = min_stop_words
        self.stop_words = set(stop_words)
        self.stop_word_languages = None if stop_word_languages is None else set(stop_word_languages)

    def __call__(self, doc: Document) -> str | None:
        text = doc.text
        words = split_words(text)
        real_words = list(itertools.filterfalse(_PUNCTUATION.__contains__, words))
        n_words = len(real_words)
        doc.measure("gopher_quality.words", n_words)
        if self.min_doc_words is not None and n_words < self.min_doc_words:
            return "short_doc"
        if n_words == 0:
            return "short_doc"
        if self.max_doc_words is not None and n_words > self.max_doc_words:
            return "long_doc"
        mean_length = sum(map(len, real_words)) / n_words
        doc.measure("gopher_quality.mean_word_length", mean_length)
        if self.min_avg_word_length is not None and mean_length < self.min_avg_word_length:
            return "below_avg_word_length"
        if self.max_avg_word_length is not None and mean_length > self.max_avg_word_length:
            return "above_avg_word_length"
        if self.max_symbol_word_ratio is not None:
            if text.count("#") / n_words > self.max_symbol_word_ratio:
                return "too_many_hashes"
            if (text.count("...") + text.count("…")) / n_words > self.max_symbol_word_ratio:
                return "too_many_ellipsis"
        lines = text.splitlines() or [""]
        if self.max_bullet_lines_ratio is not None:
            bullets = sum(line.lstrip().startswith("•") for line in lines)
            if bullets / len(lines) > self.max_bullet_lines_ratio:
                return "too_many_bullets"
        if self.max_ellipsis_lines_ratio is not None:
            ellipsis = sum(line.rstrip().endswith(("...", "…")) for line in lines)
            if ellipsis / len(lines) > self.max_ellipsis_lines_ratio:
                return "too_many_end_ellipsis"
        if self.max_non_alpha_words_ratio is not None:
            # a word of letters only counts at C speed; the others are looked at letter by letter
            alpha = sum(map(str.isalpha, words)) + sum(
                any(map(str.isalpha, w)) for w in itertools.filterfalse(str.isalpha, words)
            )
            doc.measure("gopher_quality.alpha_words_ratio", alpha / n_words)
            if alpha / n_words < self.max_non_alpha_words_ratio:
                return "below_alpha_threshold"
        if self.min_stop_words is not None and (
            self.stop_word_languages is None or doc.language in self.stop_word_languages
        ):
            if sum(map(self.stop_words.__contains__, map(str.lower, words))) < self.min_stop_words:
                return "not_enough_stop_words"
        return None


_CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
_POLICY_PHRASES = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
_TERMINAL_PUNCTUATION = (".", "?", "!", '"', "'")


class C4QualityFilter:
    """C4's line and page rules (Raffel et al. 2020). It also rewrites the text: the lines it rejects
    are removed. FineWeb switches the terminal-punctuation line rule off, so that is the default here."""

    name = "c4"

    def __init__(
        self,
        remove_citations: bool = True,
        filter_no_terminal_punct: bool = False,
        min_num_sentences: int | None = 5,
        min_words_per_line: int | None = 3,
        max_word_length: int | None = 1000,
        filter_lorem_ipsum: bool = True,
        filter_javascript: bool = True,
        filter_curly_bracket: bool = True,
        filter_policy: bool = True,
    ):
        self.remove_citations = remove_citations
        self.filter_no_terminal_punct = filter_no_terminal_punct
        self.min_num_sentences = min_num_sentences
        self.min_words_per_line = min_words_per_line
        self.max_word_length = max_word_length
        self.filter_lorem_ipsum = filter_lorem_ipsum
        self.filter_javascript = filter_javascript
        self.filter_curly_bracket = filter_curly_bracket
        self.filter_policy = filter_policy

    def __call__(self, doc: Document) -> str | None:
        kept = []
        sentences = 0
        for line in doc.text.splitlines():
            line = line.strip()
            words = line.split()
            if self.max_word_length is not None and max(map(len, words), default=0) > self.max_word_length:
                continue
            if self.remove_citations:
                line = _CITATION.sub("", line)
            if self.filter_no_terminal_punct and (not line.endswith(_TERMINAL_PUNCTUATION) or line.endswith("...")):
                continue
            if self.min_words_per_line is not None and len(words) < self.min_words_per_line:
                continue
            lower = line.lower()
            if self.filter_lorem_ipsum and "lorem ipsum" in lower:
                return "lorem_ipsum"
            if self.filter_javascript and "javascript" in lower:
                continue
            if self.filter_curly_bracket and "{" in line:
                return "curly_bracket"
            if self.filter_policy and any(p in lower for p in _POLICY_PHRASES):
                continue
            sentences += len([s for s in _SENTENCE_END.split(line) if s.strip()])
            kept.append(line)
        doc.measure("c4.sentences", sentences)
        if self.min_num_sentences is not None and sentences < self.min_num_sentences:
            return "too_few_sentences"
        doc.text = "\n".join(kept).strip()
        return None


class FineWebQualityFilter:
    """The three rules FineWeb added (Penedo et al. 2024) plus its list-ratio rule."""

    name = "fineweb"

    def __init__(
        self,
        line_punct_thr: float | None = 0.12,
        line_punct_exclude_zero: bool = False,
        short_line_thr: float | None = 0.67,
        short_line_length: int = 30,
        char_duplicates_ratio: float | None = 0.01,
        new_line_ratio: float | None = 0.3,
    ):
        self.line_punct_thr = line_punct_thr
        self.line_punct_exclude_zero = line_punct_exclude_zero
        self.short_line_thr = short_line_thr
        self.short_line_length = short_line_length
        self.char_duplicates_ratio = char_duplicates_ratio
        self.new_line_ratio = new_line_ratio

    def __call__(self, doc: Document) -> str | None:
        text = doc.text
        lines = text.split("\n")
        if self.line_punct_thr is not None:
            ratio = sum(line.endswith((".", "'", '"', "!", "?")) for line in lines) / len(lines)
            doc.measure("fineweb.line_punct_ratio", ratio)
            if ratio <= self.line_punct_thr and not (ratio == 0 and self.line_punct_exclude_zero):
                return "line_punct_ratio"
        if self.short_line_thr is not None:
            ratio = sum(len(line) <= self.short_line_length for line in lines) / len(lines)
            doc.measure("fineweb.short_line_ratio", ratio)
            if ratio >= self.short_line_thr:
                return "short_line_ratio"
        if self.char_duplicates_ratio is not None:
            chars = len(text.replace("\n", ""))
            duplicated = duplicates([line for line in lines if line.strip()])[1]
            doc.measure("fineweb.char_dup_ratio", duplicated / chars if chars else 1.0)
            if chars == 0 or duplicated / chars >= self.char_duplicates_ratio:
                return "char_dup_ratio"
        if self.new_line_ratio is not None:
            words = split_words(text)
            doc.measure("fineweb.list_ratio", text.count("\n") / len(words) if words else 1.0)
            if not words or text.count("\n") / len(words) > self.new_line_ratio:
                return "list_ratio"
        return None


# Han and kana are written without spaces: each character counts as a word.
_UNSPACED = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_LENGTH_WORDS = re.compile(f"[{_UNSPACED}]|[^\\W{_UNSPACED}]+")


class MinLengthFilter:
    """Drops documents too short to be worth training on: the only quality rule that suits encyclopedic
    and book text, which the web heuristics misjudge (lists, tables of contents, headings without final
    punctuation). Default: Dolma's 25 words for Wikipedia; Han and kana characters count one word each."""

    name = "min_length"

    def __init__(self, min_words: int | None = 25, min_chars: int | None = None):
        self.min_words = min_words
        self.min_chars = min_chars

    def __call__(self, doc: Document) -> str | None:
        words = len(_LENGTH_WORDS.findall(doc.text))
        doc.measure("min_length.words", words)
        if self.min_chars is not None and len(doc.text) < self.min_chars:
            return "too_few_chars"
        if self.min_words is not None and words < self.min_words:
            return "too_few_words"
        return None


# Order of application: the cheap length check first, then FineWeb's order.
FILTERS = {
    f.name: f
    for f in (
        MinLengthFilter,
        GopherRepetitionFilter,
        GopherQualityFilter,
        C4QualityFilter,
        FineWebQualityFilter,
        *CODE_FILTER_CLASSES,
    )
}
WEB_FILTERS = ("gopher_repetition", "gopher_quality", "c4", "fineweb")  # FineWeb's


def build_filters(names: Iterable[str], settings: dict | None = None) -> list:
    """Filters by name, in the order of `FILTERS`, with per-filter keyword overrides from `settings`."""
    settings = settings or {}
    names = list(names)
    unknown = sorted(set(names) - set(FILTERS)) + sorted(set(settings) - set(FILTERS))
    if unknown:
        raise ValueError(f"unknown filter(s) {', '.join(unknown)}; known: {', '.join(FILTERS)}")
    return [FILTERS[name](**settings.get(name, {})) for name in FILTERS if name in names]


def drop_reason(quality_filter, doc: Document) -> str | None:
    """`<filter>.<rule>` when the filter rejects the document, else None."""
    rule = quality_filter(doc)
    return None if rule is None else f"{quality_filter.name}.{rule}"


def apply_filters(filters: list, doc: Document) -> str | None:
    """The first drop reason, or None when every filter keeps the document."""
    return next((reason for reason in (drop_reason(f, doc) for f in filters) if reason is not None), None)
