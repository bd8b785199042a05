"""The extraction cascade and the extractor switch on Common Crawl pages: a run that restricts languages sets pages
aside on their text without navigation before trafilatura (`language.prefilter`), and keeps exactly what the full
path keeps less those; `extractor = "resiliparse"` extracts with resiliparse. Generated pages in four languages, and
with ../shared: real pages, and pages of real sentences in 14 languages."""

import json
import random

import pyarrow.parquet as pq
import pytest

from pipeline import cli
from pipeline.common import synthetic
from pipeline.common.schema import Document, valid_text
from pipeline.output.stats import Funnel
from pipeline.sources import commoncrawl
from pipeline.steps import extract, html, langid, process
from tests.conftest import SHARED_FIXTURES


@pytest.fixture(scope="module")
def crawl(tmp_path_factory):
    """Generated pages (en, de, fr, es) and, with ../shared, real pages and real sentences in 14 languages."""
    path = tmp_path_factory.mktemp("cascade") / "crawl.warc.gz"
    extra = []
    if SHARED_FIXTURES.is_dir():
        languages = SHARED_FIXTURES / "langid"
        sentences = {
            folder.name: (folder / "sentences.txt").read_text(encoding="utf-8").splitlines()
            for folder in sorted(languages.iterdir())
        }
        extra = synthetic.sentence_pages(sentences, 56, seed=1)
        for item in commoncrawl.read_warc(str(SHARED_FIXTURES / "warc" / "dolma-sample-0000.warc.gz")):
            if isinstance(item, commoncrawl.HtmlPage):
                body = commoncrawl.page_html(item, html.DEFAULT_MAX_HTML_BYTES).encode("utf-8")
                extra.append(synthetic.Response(item.url, body=body))
    synthetic.write_sample_warc(str(path), pages=120, seed=3, extra=extra)
    return path


def kept(warc, **settings) -> tuple[dict[str, str], Funnel]:
    """The unit processor's kept documents (id → text) and funnel, without Beam."""
    source = commoncrawl.CommonCrawl("commoncrawl", commoncrawl.Settings(warcs=[str(warc)], **settings))
    processor = process.UnitProcessor(source)
    funnel = Funnel()
    try:
        return {doc.id: doc.text for doc in processor.process(str(warc), funnel)}, funnel
    finally:
        processor.close()


def test_the_cascade_keeps_what_the_full_path_keeps_less_the_pages_it_counts(crawl, tmp_path):
    full, full_funnel = kept(crawl, languages=["en"], prefilter=False)
    out = tmp_path / "out"
    arguments = ["commoncrawl", "--warcs", str(crawl), "--languages", "en", "--no-dedup", "--output", str(out)]
    assert cli.main([*arguments, "--direct_num_workers=1"]) == 0
    stats = json.loads((out / "stats.json").read_text())
    rows = pq.read_table(sorted(out.glob("part-*.parquet"))).to_pylist()
    cascade = {row["id"]: row["text"] for row in rows}
    aside = stats["dropped"]["language.prefilter"]
    assert aside > 0.3 * stats["records_in"]  # the other languages never reach trafilatura
    assert set(cascade) <= set(full) and len(set(full) - set(cascade)) <= aside
    assert all(cascade[doc_id] == full[doc_id] for doc_id in cascade)  # byte-identical
    lost = len(set(full) - set(cascade))
    assert lost <= 0.005 * len(full), f"the cascade lost {lost} of the {len(full)} documents the full path keeps"
    assert stats["records_in"] == full_funnel.records_in == stats["kept"] + sum(stats["dropped"].values())
    # what the full path drops as another language, the cascade mostly sets aside earlier
    assert stats["dropped"].get("language", 0) + aside >= full_funnel.dropped["language"]
    report = (out / "report.html").read_text()
    assert 'data-reason="language.prefilter"' in report


def test_the_prefilter_is_on_only_where_it_cannot_change_what_is_kept(crawl):
    def prefilters(**settings):
        return commoncrawl.CommonCrawl("cc", commoncrawl.Settings(warcs=[str(crawl)], **settings)).prefilters

    assert prefilters(languages=["en"])
    assert not prefilters()  # every language is wanted: nothing to set aside
    assert not prefilters(languages=["en"], prefilter=False)
    assert not prefilters(languages=["en"], extractor="resiliparse")  # resiliparse's extraction is cheap itself


def test_the_prefilter_sets_aside_other_languages_and_lets_pages_without_text_through():
    identifier = langid.LanguageIdentifier()
    prefilter = langid.LanguagePrefilter(identifier, {"en"}, 0.05, extract.page_text)

    def page(language: str) -> Document:
        paragraphs = synthetic.article_paragraphs(random.Random(1), language)
        return Document(id=language, text=synthetic.article_page("t", paragraphs, language), source="commoncrawl")

    assert prefilter(page("en")) is None
    assert prefilter(page("de")) == langid.PREFILTER_REASON
    empty = Document(id="e", text="<html><body><script>x()</script></body></html>", source="commoncrawl")
    assert prefilter.wanted_probability(empty.text) is None and prefilter(empty) is None


def test_the_cheap_text_leaves_out_navigation_and_chrome():
    """An English article under a long German menu, header and footer: the prefilter reads the article, so the page
    goes on to the real extraction, where the whole page's first 2,000 characters would have been German."""
    rng = random.Random(3)
    german = " ".join(synthetic.article_paragraphs(rng, "de") * 4)[:2500]
    paragraphs = synthetic.article_paragraphs(rng, "en")
    article = "".join(f"<p>{p}</p>" for p in paragraphs)
    page = (
        f"<html><body><header>{german[:300]}</header><nav><ul><li>{german[300:2300]}</li></ul></nav>"
        f"<main>{article}</main><aside>{german[2300:]}</aside><footer><form>Suche {german[:80]}</form></footer>"
        "</body></html>"
    )
    text = extract.page_text(page)
    assert text is not None and german[300:340] not in text and german[:40] not in text
    assert " ".join(text.split()).startswith(" ".join(paragraphs[0].split()))
    prefilter = langid.LanguagePrefilter(langid.LanguageIdentifier(), {"en"}, 0.05, extract.page_text)
    assert prefilter(Document(id="en", text=page, source="commoncrawl")) is None
    everything = langid.LanguagePrefilter(
        langid.LanguageIdentifier(), {"en"}, 0.05, lambda html_text: " ".join(german.split()) + " " + text
    )
    assert everything(Document(id="en", text=page, source="commoncrawl")) == langid.PREFILTER_REASON


def test_the_prefilter_identifies_the_start_of_the_text():
    """A page German for its first 2,000 characters and English after: identified from its start (the default),
    it is set aside; from all of it, English has enough probability to let it through."""
    rng = random.Random(2)
    german, english = (" ".join(synthetic.article_paragraphs(rng, language)) for language in ("de", "en"))
    text = (german * 2)[: langid.PREFILTER_MAX_CHARS] + " " + english * 3
    identifier = langid.LanguageIdentifier()

    def plain(html_text):
        return html_text

    assert langid.LanguagePrefilter(identifier, {"en"}, 0.05, plain).wanted_probability(text) < 0.05
    whole = langid.LanguagePrefilter(identifier, {"en"}, 0.05, plain, max_chars=len(text))
    assert whole.wanted_probability(text) >= 0.05


def test_the_extractor_switch_extracts_with_resiliparse(crawl):
    fast, funnel = kept(crawl, extractor="resiliparse", filters=[], pii=False)  # the extractor's text, as it is
    slow, _ = kept(crawl, filters=[])
    reader = commoncrawl.CommonCrawl("cc", commoncrawl.Settings())
    pages = [
        reader.document(item) for item in commoncrawl.read_warc(str(crawl)) if isinstance(item, commoncrawl.HtmlPage)
    ]
    by_id = {doc.id: doc for doc in pages if isinstance(doc, Document)}
    assert fast and all(text == valid_text(extract.extract_resiliparse(by_id[i].text)) for i, text in fast.items())
    assert sum(fast[i] != slow[i] for i in set(fast) & set(slow)) > len(fast) / 2  # not trafilatura's text
    assert funnel.records_in == len(fast) + sum(funnel.dropped.values())


def test_an_unknown_extractor_is_refused_naming_the_setting(crawl, tmp_path, capsys):
    arguments = ["commoncrawl", "--warcs", str(crawl), "--output", str(tmp_path / "o"), "--extractor", "lynx"]
    with pytest.raises(SystemExit):
        cli.main(arguments)  # argparse's choices
    assert "invalid choice: 'lynx'" in capsys.readouterr().err
    overrides = ["commoncrawl", "--warcs", str(crawl), "--output", str(tmp_path / "o"),
                 "--sources.commoncrawl.extractor", "lynx"]  # fmt: skip
    assert cli.main(overrides) == 2
    assert "sources.commoncrawl.extractor: 'lynx' is not one of trafilatura, resiliparse" in capsys.readouterr().err


def test_the_prefilter_threshold_decides_what_is_set_aside(crawl):
    none_aside, funnel = kept(crawl, languages=["en"], prefilter_threshold=0.0)
    assert "language.prefilter" not in funnel.dropped  # no probability is under 0
    full, _ = kept(crawl, languages=["en"], prefilter=False)
    assert none_aside == full
    _, strict = kept(crawl, languages=["en"], prefilter_threshold=1.0)  # English pages too, unless certain
    _, default = kept(crawl, languages=["en"])
    assert strict.dropped["language.prefilter"] > default.dropped["language.prefilter"] > 0
