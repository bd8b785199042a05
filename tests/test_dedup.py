import datetime as dt

from pipeline import dedup
from pipeline.common.schema import Document


def test_normalisation_ignores_case_punctuation_and_spacing():
    assert dedup.exact_key("Hello,   World!\n") == dedup.exact_key("hello world")
    assert dedup.exact_key("ｆｕｌｌｗｉｄｔｈ") == dedup.exact_key("fullwidth")  # NFKC
    assert dedup.exact_key("hello world") != dedup.exact_key("hello word")


def test_survivor_is_preferred_source_then_earliest_then_smallest_id():
    early = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    late = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    a = Document(id="cc/b", text="t", source="commoncrawl", date=early)
    b = Document(id="cc/a", text="t", source="commoncrawl", date=late)
    c = Document(id="wp/z", text="t", source="wikipedia", date=late)
    d = Document(id="cc/0", text="t", source="commoncrawl", date=None)
    assert dedup.pick_survivor([b, a, d]) is a
    assert dedup.pick_survivor([a, b, c], prefer_sources=("wikipedia",)) is c
    same_date = Document(id="cc/a", text="t", source="commoncrawl", date=early)
    assert dedup.pick_survivor([a, same_date]) is same_date
    for order in ([a, b, d], [d, b, a], [b, d, a]):
        assert dedup.pick_survivor(order) is a


def test_a_line_is_known_by_ccnets_normal_form():
    from pipeline.dedup import lines

    assert lines.normalise_line("Café, 2024 — all RIGHTS reserved!") == lines.normalise_line(
        "cafe 1999 all rights reserved"
    )
    assert lines.line_hash("  ...  ") is None  # nothing left: never counted
    assert len(lines.line_hashes("a b\nA, B.\nc d\n\n")) == 2  # a line repeated in one document counts it once


def test_a_document_loses_its_common_lines_and_is_filtered_again():
    from pipeline.dedup import lines

    doc = Document(id="d", text="Menu\nA real sentence about rivers and hills.\nCookie notice", source="web")
    common = {lines.line_hash("menu"), lines.line_hash("cookie NOTICE")}
    kept, funnel = lines.rewrite(doc, common, None, "web")
    assert kept.text == "A real sentence about rivers and hills."
    assert funnel.edits == {"line_dedup.web.documents": 1, "line_dedup.web.lines": 2, "line_dedup.web.bytes": 19}
    assert funnel.examples["line_dedup.web.lines"][0]["text"] == "Menu\nCookie notice"
    short = Document(id="e", text="Menu\nToo short.", source="web")
    dropped, funnel = lines.rewrite(short, common, lambda doc: "min_length.too_few_words", "web")
    assert dropped is None and funnel.dropped == {"line_dedup.min_length.too_few_words": 1}
    only = Document(id="f", text="Menu\nCookie notice", source="web")
    assert lines.rewrite(only, common, None, "web")[1].dropped == {lines.EMPTY: 1}
    untouched = Document(id="g", text="Nothing shared here.", source="web")
    assert lines.rewrite(untouched, common, None, "web") == (untouched, lines.Funnel())
