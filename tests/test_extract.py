import pytest

from pipeline.common import synthetic
from pipeline.sources import commoncrawl
from pipeline.steps import extract, html
from tests.conftest import SHARED_FIXTURES, run_python

PARAGRAPHS = [
    "The harbour town woke slowly as the fishing boats returned with the morning tide. Most gardeners agree "
    "that tomatoes need at least six hours of direct sunlight every day.",
    "The committee will publish its final report on the new railway line before the end of the year.",
]


def test_extracts_main_text_without_boilerplate():
    page = synthetic.article_page("A title", PARAGRAPHS, "en")
    text = extract.extract_text(page, "https://a.example/1")
    assert PARAGRAPHS[0] in text and PARAGRAPHS[1] in text
    for boilerplate in ("Most read", "All rights reserved", "Privacy policy", "Sport"):
        assert boilerplate not in text


def test_boilerplate_only_page_has_no_text():
    assert not extract.extract_text(synthetic.boilerplate_only_html())


def test_isolated_extractor_gives_the_same_text_and_survives_timeouts():
    page = synthetic.article_page("A title", PARAGRAPHS, "en")
    with extract.IsolatedExtractor(timeout_s=30) as extractor:
        assert extractor(page, "https://a.example/1") == extract.extract_text(page, "https://a.example/1")
        extractor.timeout_s = 1e-6  # nothing finishes this fast: the child is killed
        huge = synthetic.article_page("Big", PARAGRAPHS * 3000, "en")
        with pytest.raises(extract.ExtractionTimeout):
            extractor(huge)
        assert extractor._process is None  # the stuck child was killed
        extractor.timeout_s = 30
        assert extractor(page) == extract.extract_text(page)  # a fresh child serves the next page


def test_submitted_pages_larger_than_a_pipe_buffer_come_back_in_order():
    """submit/result is how the WARC processor overlaps extraction with its own work: pages and texts
    far larger than a pipe's 64 KiB buffer must not deadlock either side."""
    pages = [synthetic.article_page(f"Page {i}", PARAGRAPHS * (300 * (i + 1)), "en") for i in range(3)]
    assert all(len(page) > 65536 for page in pages)
    with extract.IsolatedExtractor(timeout_s=60) as extractor:
        texts = []
        extractor.submit(pages[0])
        for page in pages[1:]:
            texts.append(extractor.result())
            extractor.submit(page)
        texts.append(extractor.result())
    assert texts == [extract.extract_text(page) for page in pages]
    assert len(texts[-1]) > 65536


FORM_PAGE = (
    "<html><body><article><h1>Opening hours of the town library</h1>"
    + "<p>The library opens at nine every weekday and closes at six, except on public holidays.</p>" * 6
    + '<form action="/ask" method="post"><label for="name">Your name, please</label>'
    '<input id="name" name="name" value="a value the form holds">'
    "<textarea name=q>A question typed into the box before the page was saved.</textarea>"
    "<select name=branch><option value=1>The harbour branch</option><option selected>The old town branch</option>"
    "</select><button>Send the question</button></form>"
    + "<p>Books borrowed in one branch may be returned to any other branch of the town library.</p>" * 6
    + "</article></body></html>"
)


# Boilerplate that trafilatura's XPaths find by ids, classes and styles (tests/test_xpaths.py has their faster forms).
BOILERPLATE_PAGE = (
    "<html><body><div class='cookie-banner'>We use cookies to improve the way this site works for you.</div>"
    "<nav id='main-nav'><a href='/'>Home</a><a href='/news'>News</a></nav><div class='content post-content'>"
    + ("<p>The ferry timetable changes on the first of May, with more crossings at weekends.</p>" * 5)
    + "<div class='share-buttons social'>Share this story with your friends on every network</div>"
    "<span style='display:none'>A hidden note that readers never see on the page itself.</span>"
    "<p class='teaser'>Read next: the new harbour wall and what it cost the town council.</p>"
    + ("<p>Tickets can be bought on board or at the harbour office from seven.</p>" * 5)
    + "</div><aside class='sidebar'>Most read stories of the week in the sidebar</aside>"
    "<div id='comments' class='comment-list'>A reader comment about the ferry and its timetable.</div>"
    "<footer class='footer'>All rights reserved by the harbour gazette</footer></body></html>"
)


def test_the_child_makes_plain_elements_and_the_same_texts():
    """The extraction child swaps lxml.html's class lookup for lxml's C one (`plain_element_classes`): form
    controls lose their classes. It also evaluates trafilatura's XPaths in their faster forms
    (`xpaths.speed_up_trafilatura`). Every text stays what trafilatura gives in this process, without either."""
    probe = (
        "import lxml.html, trafilatura.utils; from pipeline.steps import extract; "
        "form = lambda: type(lxml.html.fromstring('<form><input></form>', parser=trafilatura.utils.HTML_PARSER)); "
        "before = form().__name__; extract.plain_element_classes(); print(before, form().__name__)"
    )
    classes = run_python(probe)
    assert classes.stdout.split() == ["FormElement", "HtmlElement"]

    pages = [(FORM_PAGE, "https://library.example/hours"), (BOILERPLATE_PAGE, "https://gazette.example/ferry")]
    pages += [(r.body.decode("utf-8", "replace"), r.url) for r in synthetic.sample_responses(40, seed=11)]
    if SHARED_FIXTURES.is_dir():
        warc = SHARED_FIXTURES / "warc" / "dolma-sample-0000.warc.gz"
        pages += [
            (commoncrawl.page_html(item, html.DEFAULT_MAX_HTML_BYTES), item.url)
            for item in commoncrawl.read_warc(str(warc))
            if isinstance(item, commoncrawl.HtmlPage)
        ]
    expected = [extract.extract_text(page, url) for page, url in pages]  # this process: lxml.html's own lookup
    assert "Books borrowed" in expected[0] and sum(map(bool, expected)) > len(pages) // 2
    assert "ferry timetable" in expected[1]
    for boilerplate in ("cookies", "Share this", "hidden note", "Read next", "Most read", "reader comment"):
        assert boilerplate not in expected[1]
    with extract.IsolatedExtractor(timeout_s=60) as extractor:
        assert [extractor(page, url) for page, url in pages] == expected
