"""Rules driven by word lists the user gives: FineWeb's URL filter and C4's bad-words filter.

`UrlFilter` is datatrove's `URLFilter` as FineWeb ran it, with the lists as files: a blocked domain (or a subdomain of
one) or exact URL; a hard banned word among the URL's words; `soft_threshold` or more soft banned words; a banned
subword anywhere in the URL with its punctuation removed (an Aho-Corasick automaton, pyahocorasick). The URL's words
are its runs of ASCII letters and digits, lower-cased; list entries are normalised the same way. Each rule is its
own drop reason. README.md ("Publishing and evaluating honestly") names the public lists FineWeb used and where to get them.

`BadWords` is C4's filter (datatrove's `C4BadWordsFilter`): a document containing a listed word of its language is
dropped as `badwords`, except a `keep_fraction` of them chosen by a hash of the document's id and `seed` (the same
documents on every engine and in every order). Words must stand between non-word characters, except in languages
written without spaces (Japanese, Thai, Chinese), where any occurrence counts. A language without a list is kept.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

import xxhash

from pipeline.common.remote import read_text_lines

_NOT_WORD = re.compile(r"[^a-zA-Z0-9]+")
UNSPACED_LANGUAGES = ("ja", "th", "zh")


def _listed(lines: Iterable[str]) -> list[str]:
    return [line for line in (raw.split("#", 1)[0].strip() for raw in lines) if line]


def normalise_url_word(word: str) -> str:
    return _NOT_WORD.sub("", word).lower()


class UrlFilter:
    """The URL rules; `rule(url)` is the drop reason or None. Each list is optional."""

    def __init__(
        self,
        blocklist: Iterable[str] = (),
        banned_words: Iterable[str] = (),
        soft_banned_words: Iterable[str] = (),
        banned_subwords: Iterable[str] = (),
        soft_threshold: int = 2,
    ):
        self.domains: set[str] = set()
        self.urls: set[str] = set()
        for entry in _listed(blocklist):
            entry = entry.lower()
            if "://" in entry:
                self.urls.add(entry.rstrip("/"))
            else:
                self.domains.add(entry.removeprefix("www.").rstrip("."))
        self.banned_words = {normalise_url_word(w) for w in _listed(banned_words)} - {""}
        self.soft_banned_words = {normalise_url_word(w) for w in _listed(soft_banned_words)} - {""}
        self.soft_threshold = soft_threshold
        subwords = {normalise_url_word(w) for w in _listed(banned_subwords)} - {""}
        self.subwords = None
        if subwords:
            import ahocorasick

            self.subwords = ahocorasick.Automaton(ahocorasick.STORE_INTS)
            for number, word in enumerate(sorted(subwords)):
                self.subwords.add_word(word, number)
            self.subwords.make_automaton()

    @classmethod
    def from_files(
        cls,
        blocklist: str = "",
        banned_words: str = "",
        soft_banned_words: str = "",
        banned_subwords: str = "",
        soft_threshold: int = 2,
    ) -> UrlFilter:
        """From list files (local or remote, one entry per line, `#` starts a comment); "" for none."""

        def read(path: str) -> list[str]:
            return read_text_lines(path) if path else []

        return cls(read(blocklist), read(banned_words), read(soft_banned_words), read(banned_subwords), soft_threshold)

    def rule(self, url: str | None) -> str | None:
        if not url:
            return None
        lower = url.lower()
        if lower.rstrip("/") in self.urls:
            return "url_blocklist"
        if self.domains:
            parts = (urlsplit(url).hostname or "").lower().rstrip(".").split(".")
            if any(".".join(parts[i:]) in self.domains for i in range(len(parts))):
                return "url_blocklist"
        if self.banned_words or self.soft_banned_words:
            words = set(_NOT_WORD.split(lower))
            if not self.banned_words.isdisjoint(words):
                return "url_banned_word"
            if self.soft_banned_words and len(self.soft_banned_words & words) >= self.soft_threshold:
                return "url_soft_banned_words"
        if self.subwords is not None and next(self.subwords.iter(normalise_url_word(url)), None) is not None:
            return "url_banned_subword"
        return None


class BadWords:
    """C4's bad-words rule as a step; `lists` maps a language code to its word list file."""

    name = "badwords"

    def __init__(self, lists: Mapping[str, str], keep_fraction: float = 0.0, seed: int = 0):
        self.keep_fraction = keep_fraction
        self.seed = seed
        self.patterns: dict[str, re.Pattern] = {}
        for language, path in lists.items():
            words = sorted({w.lower() for w in _listed(read_text_lines(path))}, key=lambda w: (-len(w), w))
            if not words:
                continue
            alternatives = "|".join(map(re.escape, words))
            unspaced = language in UNSPACED_LANGUAGES
            self.patterns[language] = re.compile(alternatives if unspaced else rf"(?<!\w)(?:{alternatives})(?!\w)")
        self.changes: collections.Counter = collections.Counter()

    def kept_anyway(self, doc_id: str) -> bool:
        if self.keep_fraction <= 0:
            return False
        draw = xxhash.xxh3_64_intdigest(doc_id.encode("utf-8", "surrogatepass"), seed=self.seed) / 2**64
        return draw < self.keep_fraction

    def __call__(self, doc) -> str | None:
        pattern = self.patterns.get(doc.language or "")
        if pattern is None or pattern.search(doc.text.lower()) is None:
            return None
        if self.kept_anyway(doc.id):
            self.changes["badwords.kept_anyway"] += 1
            return None
        return "badwords"
