import collections
import random

import pytest

from pipeline.common import synthetic
from pipeline.common.schema import Document
from pipeline.steps import filters, ngrams as text_ngrams, wordlists

GOOD = (
    "The harbour town woke slowly as the fishing boats returned with the morning tide. "
    "Most gardeners agree that tomatoes need at least six hours of direct sunlight every day.\n"
    "The committee will publish its final report on the new railway line before the end of the year. "
    "A good loaf of bread depends less on the recipe than on the patience of the baker.\n"
    "Researchers at the university measured how quickly glaciers in the northern valleys have retreated. "
    "The old library was rebuilt after the flood, and its reading room now faces the river.\n"
    "Volunteers planted more than two thousand trees along the edge of the motorway last spring."
)


def doc(text: str, language: str = "en") -> Document:
    return Document(id="t/1", text=text, source="test", language=language)


def test_every_filter_keeps_good_prose():
    for quality_filter in filters.build_filters(filters.WEB_FILTERS):
        assert quality_filter(doc(GOOD)) is None, quality_filter.name


def test_gopher_repetition_rules():
    repetition = filters.GopherRepetitionFilter()
    assert repetition(doc("\n\n".join(["Same paragraph here."] * 5 + ["Another one."]))) == "dup_para_frac"
    assert repetition(doc("\n".join(["A repeated line of text"] * 5 + ["x", "y", "z", "w", "v"]))) == "dup_line_frac"
    assert repetition(doc("buy now " * 50 + GOOD)) == "top_2_gram"
    assert filters.GopherRepetitionFilter(top_n_grams=())(doc("buy now " * 50 + GOOD)) is not None
    assert (
        filters.GopherRepetitionFilter(dup_para_frac=None, dup_para_char_frac=None)(
            doc("\n\n".join(["Same paragraph here."] * 5 + ["Another one."]))
        )
        == "dup_line_frac"
    )


def joined_ngrams(words: list[str], n: int) -> list[str]:
    return [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]


def top_ngram_chars(ngrams: list[str]) -> int:
    """Gopher's definition on strings: the most frequent n-gram's characters times its count (the first to
    occur among ties, as Counter.most_common gives it)."""
    ngram, count = collections.Counter(ngrams).most_common(1)[0]
    return len(ngram) * count


def duplicated_ngram_chars(ngrams: list[str], n: int) -> int:
    seen, chars, index = set(), 0, 0
    while index < len(ngrams):
        if ngrams[index] in seen:
            chars += len(ngrams[index])
            index += n
        else:
            seen.add(ngrams[index])
            index += 1
    return chars


def test_the_ngram_measures_equal_gopher_definitions_on_joined_strings():
    """The numbered n-grams give exactly what joining and comparing strings gives: random short word lists
    (ties, texts shorter than n), repeated units (overlapping repeats), spam, words that stop repeating from some
    n on (the levels past it are not sorted), single words (n = 1), levels asked out of order."""
    rng = random.Random(0)
    vocabulary = ["a", "bb", "ccc", "dd", "e", "ff!", ".", ",", "x", "yy"]
    compared = 0
    for trial in range(800):
        if trial % 4 == 0:
            words = [rng.choice(vocabulary[: rng.randint(1, len(vocabulary))]) for _ in range(rng.randint(0, 60))]
        elif trial % 4 == 1:
            unit = [rng.choice(vocabulary) for _ in range(rng.randint(1, 6))]
            words = (unit * 12)[: rng.randint(0, 70)]
        elif trial % 4 == 2:
            words = text_ngrams.split_words(synthetic.spam_document(rng))
        else:  # distinct words with one run of k of them repeated: no (k+1)-gram repeats
            words = [f"w{i}" for i in range(rng.randint(0, 40))]
            start, k = rng.randint(0, max(0, len(words) - 1)), rng.randint(1, 5)
            words += words[start : start + k] + [f"v{i}" for i in range(rng.randint(0, 10))]
        index = text_ngrams.NgramIndex(words)
        for n in rng.sample(range(1, 11), 10) if trial % 5 == 0 else range(1, 11):
            ngrams, level = joined_ngrams(words, n), index.level(n)
            assert (level is None) == (not ngrams)
            if ngrams:
                assert text_ngrams.top_ngram_chars(level) == top_ngram_chars(ngrams), (words, n)
                assert text_ngrams.duplicated_ngram_chars(level, n) == duplicated_ngram_chars(ngrams, n), (words, n)
                compared += 1
    assert compared > 5000


def test_gopher_quality_rules():
    quality = filters.GopherQualityFilter()
    assert quality(doc("Too short to be a document.")) == "short_doc"
    assert quality(doc(" ".join(["a"] * 60))) == "below_avg_word_length"
    assert quality(doc(" ".join(["incomprehensibilities"] * 60))) == "above_avg_word_length"
    assert quality(doc(GOOD + " #tag" * 30)) == "too_many_hashes"
    assert quality(doc(GOOD.replace(".", "...") + " wait..." * 20)) == "too_many_ellipsis"
    assert quality(doc("\n".join(["• " + GOOD[:80]] * 60))) == "too_many_bullets"
    assert quality(doc(" ".join(["1234 5678"] * 40) + " and the words")) == "below_alpha_threshold"
    no_stop_words = " ".join(["Brown foxes jump quickly over lazy dogs."] * 10)
    assert quality(doc(no_stop_words)) == "not_enough_stop_words"
    # the English stop-word rule does not apply to other languages by default
    assert quality(doc(no_stop_words, language="de")) is None
    assert filters.GopherQualityFilter(stop_word_languages=None)(doc(no_stop_words, "de")) == "not_enough_stop_words"
    assert filters.GopherQualityFilter(min_doc_words=3)(doc("Three little words and the end.")) is None


def test_c4_rules_rewrite_or_drop():
    c4 = filters.C4QualityFilter()
    kept = doc(
        GOOD + "\nPlease enable JavaScript to view the comments.\nRead our privacy policy here today.\nShort line"
    )
    assert c4(kept) is None
    assert "JavaScript" not in kept.text and "privacy policy" not in kept.text and "Short line" not in kept.text
    assert c4(doc(GOOD + "\nLorem ipsum dolor sit amet, consectetur.")) == "lorem_ipsum"
    assert c4(doc(GOOD + "\nfunction f() { return 1; } is code.")) == "curly_bracket"
    assert c4(doc("One sentence here. Two sentences here.")) == "too_few_sentences"
    cited = doc(GOOD.replace("tide.", "tide.[12]"))
    assert c4(cited) is None and "[12]" not in cited.text
    # FineWeb switches the terminal-punctuation rule off; C4 had it on
    unpunctuated = doc(GOOD.replace(".\n", "\n"))
    assert filters.C4QualityFilter()(unpunctuated) is None
    assert filters.C4QualityFilter(filter_no_terminal_punct=True)(doc(GOOD.replace(".", ""))) == "too_few_sentences"


def test_fineweb_rules():
    fineweb = filters.FineWebQualityFilter()
    assert (
        fineweb(doc("\n".join(["Menu item without punctuation"] * 3 + ["Ends well."] * 0 + ["x y z"])))
        == "line_punct_ratio"
    )
    assert fineweb(doc("\n".join(["Short one."] * 3 + [GOOD.replace("\n", " ")]))) == "short_line_ratio"
    lines = GOOD.split("\n")
    assert fineweb(doc("\n".join(lines + [lines[0]]))) == "char_dup_ratio"
    listy = "\n".join(f"Item {i}." for i in range(50))
    assert fineweb(doc(listy)) in {"short_line_ratio", "list_ratio"}
    assert filters.FineWebQualityFilter(short_line_thr=None)(doc(listy)) == "list_ratio"


def test_apply_filters_names_filter_and_rule():
    chain = filters.build_filters(filters.WEB_FILTERS)
    assert filters.apply_filters(chain, doc("Too short.")) == "gopher_repetition.top_2_gram"
    chain = filters.build_filters(["gopher_quality", "fineweb"])
    assert filters.apply_filters(chain, doc("Too short.")) == "gopher_quality.short_doc"
    assert filters.apply_filters(chain, doc(GOOD)) is None
    assert filters.apply_filters([], doc("Too short.")) is None


def test_build_filters_validates_names_and_settings():
    built = filters.build_filters(["fineweb", "gopher_quality"], {"gopher_quality": {"min_doc_words": 5}})
    assert [f.name for f in built] == ["gopher_quality", "fineweb"]  # FineWeb's order, whatever was asked
    assert built[0].min_doc_words == 5
    with pytest.raises(ValueError, match="unknown filter"):
        filters.build_filters(["gopher"])
    with pytest.raises(TypeError):
        filters.build_filters(["c4"], {"c4": {"no_such_threshold": 1}})


def test_url_blocklist_domains_subdomains_and_urls():
    blocklist = wordlists.UrlFilter(["# comment", "spam.example", "www.ads.example", "https://ok.example/bad-page", ""])
    assert blocklist.rule("https://spam.example/x") == "url_blocklist"
    assert blocklist.rule("http://cdn.spam.example/y")
    assert blocklist.rule("https://ads.example/")
    assert blocklist.rule("https://ok.example/bad-page/")
    assert not blocklist.rule("https://ok.example/good-page")
    assert not blocklist.rule("https://notspam.example/")
    assert not blocklist.rule(None)
