import pytest

from pipeline.common import synthetic
from pipeline.steps import extract

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
