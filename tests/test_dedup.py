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
