"""Wikipedia dumps without Beam: wikitext cleaning, sequential and per-stream (multistream) reading, bad
input. Generated dumps always; the real dumps in ../shared/fixtures/wikipedia when present."""

import collections
import lzma

import pytest

from pipeline.common import synthetic
from pipeline.common.schema import ReadError, Skipped
from pipeline.sources import mediawiki
from pipeline.steps import wikitext

REMNANTS = ("{{", "}}", "[[", "]]", "'''", "<ref", "|-")

SITEINFO = """<siteinfo><sitename>Wikipedia</sitename><dbname>xxwiki</dbname>
<base>https://xx.wikipedia.org/wiki/Main_Page</base>
<namespaces><namespace key="0" /><namespace key="6">Fichier</namespace><namespace key="14">Catégorie</namespace></namespaces>
</siteinfo>"""


def page_xml(page_id, title, text, ns=0, redirect=False):
    redirect_tag = f'<redirect title="{title} (other)" />' if redirect else ""
    return (
        f"<page><title>{title}</title><ns>{ns}</ns><id>{page_id}</id>{redirect_tag}"
        f"<revision><id>{page_id}0</id><timestamp>2024-03-0{page_id % 9 + 1}T10:00:00Z</timestamp>"
        f'<text xml:space="preserve">old text</text></revision>'
        f"<revision><id>{page_id}1</id><timestamp>2024-04-0{page_id % 9 + 1}T10:00:00Z</timestamp>"
        f'<text xml:space="preserve">{text}</text></revision></page>'
    )


HEADER = '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" xml:lang="xx">' + SITEINFO


def pages(count):
    return [
        page_xml(i, f"Article {i}", f"Text of article {i} with a [[link|linked word]].") for i in range(1, count + 1)
    ]


def multistream(tmp_path, page_list, per_stream=3, corrupt_stream=None):
    """A multistream dump and index written the way Wikimedia writes them (pages titled `Article N`)."""
    streams = synthetic.dump_streams(HEADER, page_list, per_stream)
    if corrupt_stream is not None:
        data = bytearray(streams[corrupt_stream])
        data[len(data) // 2] ^= 0xFF
        streams[corrupt_stream] = bytes(data)
    dump = tmp_path / "xxwiki-pages-articles-multistream.xml.bz2"
    index = tmp_path / "xxwiki-pages-articles-multistream-index.txt.bz2"
    titles = [(number, f"Article {number}") for number in range(1, len(page_list) + 1)]
    synthetic.write_dump(str(dump), str(index), streams, titles, per_stream)
    offsets = [sum(len(stream) for stream in streams[:i]) for i in range(len(streams))]
    return str(dump), str(index), offsets


def read_in_groups(dump, offsets, groups):
    units = mediawiki.stream_groups(offsets, groups)
    items = []
    for number, unit in enumerate(units):
        items += mediawiki.read_streams(dump, unit, units[number + 1][0] if number + 1 < len(units) else None)
    return items


def test_wikitext_to_plain_text():
    source = (
        "{{Infobox city|name=Kyiv}}\n'''Kyiv''' is the [[capital city|capital]] of [[Ukraine]].<ref>{{cite web|url=x}}</ref>"
        " It has <!-- hidden --> many parks.[[File:Kyiv.jpg|thumb|A [[view]] of Kyiv]]\n== History ==\nFounded early.<ref name=a/>\n"
        "* First item with ''italic''\n* Second [http://example.com external link]\n{| class=wikitable\n|-\n| cell 1 || cell 2\n|}\n"
        "A formula <math>x^2</math> and a note.<ref group=n>Smith 2001, p. 4</ref>\n"
        "__NOTOC__\n[[Category:Cities]]\n[[Fichier:x.png|thumb|photo]]\n[[Catégorie:Villes]]\n[[en:Kyiv]]\n"
    )
    cleaner = wikitext.WikitextCleaner(file_prefixes=["Fichier"], category_prefixes=["Catégorie"])
    text = cleaner.clean(source)
    assert text.splitlines()[0] == "Kyiv is the capital of Ukraine. It has many parks."
    assert "\nHistory\n" in text and "First item with italic" in text and "Second external link" in text
    assert "A formula and a note." in text
    for gone in (
        "Infobox",
        "cite",
        "Smith 2001",
        "x^2",
        "hidden",
        "view of Kyiv",
        "cell 1",
        "NOTOC",
        "Cities",
        "photo",
        "Villes",
        "en:Kyiv",
    ):
        assert gone not in text
    assert not any(remnant in text for remnant in REMNANTS)
    assert "cell 1 cell 2" in wikitext.WikitextCleaner(keep_tables=True).clean(source)


def test_sequential_and_per_stream_reading_give_the_same_pages(tmp_path):
    page_list = pages(10) + [
        page_xml(11, "Talk:X", "talk", ns=1),
        page_xml(12, "Old name", "#REDIRECT [[Article 1]]", redirect=True),
    ]
    dump, index, offsets = multistream(tmp_path, page_list)
    sequential = list(mediawiki.read_dump(dump))
    assert mediawiki.read_index(index) == offsets[1:-1]
    in_parallel = read_in_groups(dump, mediawiki.read_index(index), groups=3)
    key = lambda items: [(p.page_id, p.title, p.text) for p in items if isinstance(p, mediawiki.Page)]  # noqa: E731
    assert key(sequential) == key(in_parallel) and len(key(sequential)) == 10
    assert collections.Counter(getattr(i, "reason", None) for i in in_parallel if isinstance(i, Skipped)) == {
        "namespace": 1,
        "redirect": 1,
    }
    first = next(p for p in sequential if isinstance(p, mediawiki.Page))
    assert first.text.startswith("Text of article 1") and first.revision_id == 11  # the latest revision
    info = mediawiki.read_siteinfo(dump, offsets[1])
    assert (info.dbname, info.language, info.namespaces[6]) == ("xxwiki", "xx", "Fichier")
    assert info.url("Article 1") == "https://xx.wikipedia.org/wiki/Article_1"


def test_a_corrupt_stream_is_reported_and_the_others_are_read(tmp_path):
    dump, index, offsets = multistream(tmp_path, pages(9), corrupt_stream=2)
    items = read_in_groups(dump, mediawiki.read_index(index), groups=1)
    errors = [i for i in items if isinstance(i, ReadError)]
    assert [e.offset for e in errors] == [offsets[2]]
    assert sorted(p.page_id for p in items if isinstance(p, mediawiki.Page)) == [1, 2, 3, 7, 8, 9]


def test_truncated_and_utf16_dumps(tmp_path):
    whole = (HEADER + "".join(pages(5)) + "</mediawiki>").encode()
    truncated = tmp_path / "xxwiki.xml.xz"
    truncated.write_bytes(lzma.compress(whole[: whole.index(b"Text of article 4") + 5]))
    items = list(mediawiki.read_dump(str(truncated)))
    assert [p.page_id for p in items if isinstance(p, mediawiki.Page)] == [1, 2, 3]
    assert isinstance(items[-1], ReadError)
    utf16 = tmp_path / "xxwiki.xml"
    utf16.write_bytes(('<?xml version="1.0" encoding="UTF-16"?>' + whole.decode()).encode("utf-16"))
    assert len([p for p in mediawiki.read_dump(str(utf16)) if isinstance(p, mediawiki.Page)]) == 5


def test_entities_are_never_expanded(tmp_path):
    laughs = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    payload = (
        f'<?xml version="1.0"?><!DOCTYPE mediawiki [<!ENTITY lol0 "lol">{laughs}'
        f'<!ENTITY ext SYSTEM "file:///etc/passwd">]>'
        + HEADER
        + page_xml(1, "Bomb", "before &lol9; after &ext;")
        + "</mediawiki>"
    )
    path = tmp_path / "bomb.xml"
    path.write_text(payload)
    items = list(mediawiki.read_dump(str(path)))
    texts = [p.text for p in items if isinstance(p, mediawiki.Page)]
    assert all(len(text) < 1000 and "lollol" not in text and "root:" not in text for text in texts)


@pytest.fixture
def wiki_fixtures(shared_fixtures):
    return shared_fixtures / "wikipedia"


def test_real_latgalian_dump_gives_its_903_articles(wiki_fixtures):
    siteinfo = []
    items = list(mediawiki.read_dump(str(wiki_fixtures / "ltgwiki-pages-articles.xml"), siteinfo=siteinfo))
    articles = [p for p in items if isinstance(p, mediawiki.Page)]
    assert len(articles) == 903 and not [i for i in items if isinstance(i, ReadError)]
    assert siteinfo[0].language == "ltg"
    cleaner = wikitext.WikitextCleaner(
        file_prefixes=[siteinfo[0].namespaces.get(6, "")], category_prefixes=[siteinfo[0].namespaces.get(14, "")]
    )
    texts = [cleaner.clean(p.text) for p in articles]
    leftovers = [t for t in texts if any(r in t for r in REMNANTS)]
    assert leftovers == [], [t[:200] for t in leftovers[:3]]


@pytest.mark.parametrize("wiki", ["uk", "ja"])
def test_real_multistream_dumps_read_the_same_through_the_index(wiki_fixtures, wiki):
    dump = str(wiki_fixtures / f"{wiki}wiki-pages-articles-multistream-head4MB.xml.bz2")
    offsets = mediawiki.read_index(str(wiki_fixtures / f"{wiki}wiki-pages-articles-multistream-index-head4MB.txt.bz2"))
    key = lambda items: [(p.page_id, p.text) for p in items if isinstance(p, mediawiki.Page)]  # noqa: E731
    sequential = key(mediawiki.read_dump(dump))
    assert sequential and key(read_in_groups(dump, offsets, groups=2)) == sequential
    assert mediawiki.read_siteinfo(dump, offsets[0]).language == wiki


def test_real_truncated_greek_dump_yields_complete_pages_then_the_break(wiki_fixtures):
    items = list(mediawiki.read_dump(str(wiki_fixtures / "elwiki-truncated-mid-page.xml.xz")))
    assert isinstance(items[-1], ReadError) and "ends or breaks" in items[-1].error
    assert len([p for p in items if isinstance(p, mediawiki.Page)]) > 500
