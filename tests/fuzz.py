"""Coverage-guided fuzzing (atheris, libFuzzer's engine) of the code that meets raw input (docs/reliability.md).

    python -m tests.fuzz seeds DIR                         # write each target's seed inputs under DIR/<target>/
    python -m tests.fuzz TARGET [libFuzzer flags] [DIR…]   # run one target, e.g. -runs=2000 -seed=1 DIR/warc

Targets, each the whole per-document path from bytes to a stored row, run without the unit processor's guard (the
guard would hide what the fuzzer is looking for: an exception is a finding):
- warc: bytes → WARC records → HTML decoding → trafilatura → language ID → the web filters → an Arrow row
- mediawiki: bytes → dump XML → pages → wikitext cleaning → language ID → min_length → an Arrow row
- corpus: bytes (the first byte chooses the format: JSON lines, text, gzip, zstd, Parquet, Arrow) → the corpus
  reader's records → documents → an Arrow row
- recipe: bytes → TOML → a checked recipe; only the user's mistakes (UsageError, TOML syntax) may be raised
- archive: bytes (the first byte chooses tar.gz, tar or zip) → a repository archive → the code source's plan, its
  members, documents, the secrets step and the code filters → an Arrow row; nothing may be written outside its folder
- publish: bytes → text → the steps that rewrite or judge kept text: PII anonymisation (with an extra pattern),
  bad words, benchmark decontamination (drop and cut, against an index of fixed items), boilerplate-line removal, and
  the URL word rules on the same text read as a URL

A crash leaves libFuzzer's `crash-<sha1>` file in the working folder: `python -m tests.fuzz TARGET crash-…` replays
it. `bench/bench_fuzz.py` runs the long campaign; the suite (`tests/test_fuzz.py`) a short one of fixed seed.
"""

from __future__ import annotations

import bz2
import functools
import gzip
import io
import json
import os
import random
import sys
import tempfile
import tomllib

import atheris

with atheris.instrument_imports(include=["pipeline"]):
    from pipeline import recipe
    from pipeline.common import contamination, synthetic, tasks
    from pipeline.common.schema import Document, documents_to_table, valid_text
    from pipeline.common.settings import UsageError
    from pipeline.dedup import lines
    from pipeline.sources import code as code_source, commoncrawl, localtext, mediawiki as dumps, wikipedia
    from pipeline.steps import decontam, extract, langid, pii, process, wordlists

MAX_LEN = 65536
_STEPS: dict[str, list] = {}


def _document_steps(kind: str) -> list:
    """Language ID and the filters of a source of `kind` with its default settings (the model loads once)."""
    if kind not in _STEPS:
        settings = {"web": commoncrawl.Settings(), "text": localtext.Settings(), "code": code_source.Settings()}[kind]
        _STEPS[kind] = process.document_steps(settings, langid.LanguageIdentifier())
    return _STEPS[kind]


@functools.cache
def _prefilter():
    return langid.LanguagePrefilter(langid.LanguageIdentifier(), {"en"}, 0.05, extract.page_text)


def _finish(doc: Document, kind: str) -> None:
    """The common steps, unguarded, then the row as a shard stores it."""
    doc.make_valid()
    for step in _document_steps(kind):
        if step(doc) is not None:
            return
    documents_to_table([doc])


def warc(data: bytes) -> None:
    source = commoncrawl.CommonCrawl("commoncrawl", commoncrawl.Settings())
    for record in commoncrawl.read_warc("fuzz.warc", opener=lambda _, start=0: io.BytesIO(data[start:])):
        doc = source.document(record)
        if not isinstance(doc, Document):
            continue
        doc.make_valid()
        # the cascade's first stage: resiliparse and language ID run in the worker itself, not in the child
        _prefilter().wanted_probability(doc.text)
        text = extract.extract_text(doc.text, doc.url)
        if text and text.strip():
            doc.text = valid_text(text)
            _finish(doc, "web")


def mediawiki(data: bytes) -> None:
    source = wikipedia.Wikipedia("wikipedia", wikipedia.Settings(dumps=["fuzz.xml"]))
    siteinfo: list = []
    for record in dumps.parse_pages(io.BytesIO(data), None, dumps.DEFAULT_NAMESPACES, siteinfo):
        if isinstance(record, dumps.Page):
            record.site = siteinfo[0] if siteinfo else None
        doc = source.document(record)
        if not isinstance(doc, Document):
            continue
        doc.make_valid()
        clean = wikipedia.CleanWikitext(record.site or dumps.SiteInfo(), keep_tables=False)
        if clean(doc) is None:
            _finish(doc, "text")


CORPUS_SUFFIXES = (".jsonl", ".txt", ".jsonl.gz", ".txt.gz", ".jsonl.zst", ".parquet", ".arrow", ".json.bz2")


def corpus_file(data: bytes) -> None:
    if not data:
        return
    suffix = CORPUS_SUFFIXES[data[0] % len(CORPUS_SUFFIXES)]
    source = localtext.LocalText("text", localtext.Settings(inputs=["fuzz"], lines=bool(data[0] & 0x80)))
    with tempfile.NamedTemporaryFile(suffix=suffix) as handle:
        handle.write(data[1:])
        handle.flush()
        for record in source.read((handle.name, "fuzz" + suffix)):
            doc = source.document(record)
            if isinstance(doc, Document):
                _finish(doc, "text")


def recipe_file(data: bytes) -> None:
    try:
        loaded = recipe.from_table(tomllib.loads(data.decode("utf-8", "replace")))
        loaded.check()
        loaded.to_dict()
    except (UsageError, tomllib.TOMLDecodeError):
        pass


ARCHIVE_SUFFIXES = (".tar.gz", ".tar", ".zip")


def archive(data: bytes) -> None:
    if not data:
        return
    suffix = ARCHIVE_SUFFIXES[data[0] % len(ARCHIVE_SUFFIXES)]
    source = code_source.Code("code", code_source.Settings(repos=["fuzz"], licenses=["any"], max_file_bytes=20_000))
    with tempfile.TemporaryDirectory(prefix="fuzz-archive-") as folder:
        path = os.path.join(folder, "repo" + suffix)
        with open(path, "wb") as handle:
            handle.write(data[1:])
        try:
            units = source.plan((path, "repo"))
        except (ValueError, OSError, EOFError):  # an unreadable archive: the input's error (as the engines count it)
            return
        for unit in units:
            try:
                for record in source.read(unit):
                    doc = source.document(record)
                    if isinstance(doc, Document):
                        for step in source.steps(unit):
                            step(doc)
                        _finish(doc, "code")
            except (ValueError, OSError, EOFError, *code_source.UNREADABLE):  # a damaged stream: the unit's error
                pass
        if os.listdir(folder) != ["repo" + suffix]:
            raise AssertionError(f"the reader wrote {os.listdir(folder)}")


# The benchmark items the publish target's index holds (its seeds quote them)
PUBLISH_ITEMS = [
    "How do I ready a guinea pig cage for its new occupants? Provide the guinea pig with a cage full of bedding.",
    "Which is the most likely effect of this increase in rotation? Planetary days will become shorter.",
    "überall 東京 naïve café: ein Satz mit genug Wörtern für ein Dreizehn-Gramm, oder nicht, meine Freunde?",
]


@functools.cache
def _publish_steps() -> tuple:
    folder = tempfile.mkdtemp(prefix="fuzz-publish-")
    items = os.path.join(folder, "items.jsonl")
    with open(items, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps({"text": item}) + "\n" for item in PUBLISH_ITEMS)
    index = os.path.join(folder, "index.npz")
    with open(index, "wb") as handle:
        handle.write(contamination.NgramIndex.build([tasks.parse_spec(f"items=jsonl:{items}")]).to_bytes())
    words = os.path.join(folder, "en.txt")
    with open(words, "w", encoding="utf-8") as handle:
        handle.write("darn\nheck\n")
    cut = decontam.DecontaminationStep(index, "cut", [])
    url_filter = wordlists.UrlFilter([], ["casino"], ["hot", "girls"], ["pornhub"])
    return (
        pii.PiiStep(extra=[r"\+\d{2} \d+"]),
        wordlists.BadWords({"en": words}),
        decontam.DecontaminationStep(index),
        cut,
        url_filter,
    )


def publish(data: bytes) -> None:
    text = valid_text(data.decode("utf-8", "replace"))
    anonymise, badwords, drop, cut, url_filter = _publish_steps()
    doc = Document(id="fuzz", text=text, source="web", language="en")
    anonymise(doc)
    if anonymise.anonymise(doc.text)[1].get("email") or anonymise.anonymise(doc.text)[1].get("ip"):
        raise AssertionError(f"anonymised text still has an address: {doc.text!r}")
    badwords(doc)
    drop(Document(id="fuzz", text=doc.text, source="web"))
    cut(doc)
    url_filter.rule(text)
    common = set(list(lines.line_hashes(doc.text))[::2])  # half the lines taken as boilerplate
    kept, funnel = lines.rewrite(doc, common, None, "web")
    if kept is not None and common and lines.line_hashes(kept.text) & common:
        raise AssertionError(f"a boilerplate line is still there: {kept.text!r}")
    documents_to_table([doc])
    drop.details.clear()  # the unit processor takes each dropped document's detail; here nothing does
    cut.details.clear()


TARGETS = {
    "warc": warc,
    "mediawiki": mediawiki,
    "corpus": corpus_file,
    "recipe": recipe_file,
    "publish": publish,
    "archive": archive,
}


def _shared(*parts: str) -> str:
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "fixtures", *parts)


def seed_inputs() -> dict[str, list[bytes]]:
    """Each target's seeds: generated records, and the real files of ../shared/fixtures where it is present."""
    rng = random.Random(0)
    pages = synthetic.sample_responses(12, seed=1)
    plain, zipped = io.BytesIO(), io.BytesIO()
    synthetic.write_warc(plain, pages[:6], gzip_records=False, ids=rng)
    synthetic.write_warc(zipped, pages[6:], ids=rng)
    seeds: dict[str, list[bytes]] = {"warc": [plain.getvalue(), zipped.getvalue()]}
    article = synthetic.wiki_article(rng, "Town", synthetic.article_paragraphs(rng, "en"))
    header = synthetic.dump_header("enwiki", "en")
    page = synthetic.page_xml(1, "Town", article, "2026-01-01T00:00:00Z")
    redirect = synthetic.page_xml(2, "Village", "#REDIRECT [[Town]]", "2026-01-01T00:00:00Z", redirect="Town")
    seeds["mediawiki"] = [(header + page + redirect + "</mediawiki>").encode()]
    text = " ".join(synthetic.article_paragraphs(rng, "de"))
    lines = f'{{"id": "a", "text": "{text[:400]}", "url": "https://x.example/", "date": "2026-01-01"}}\n'
    seeds["corpus"] = [
        bytes([0]) + lines.encode(),
        bytes([1 | 0x80]) + text.encode(),
        bytes([2]) + gzip.compress(lines.encode(), mtime=0),
    ]
    with open(
        os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "curate-sample.toml"), "rb"
    ) as handle:
        seeds["recipe"] = [
            handle.read(),
            b'[output]\ndir = "out"\n[sources.books]\nkind = "text"\ninputs = ["*.txt"]\n',
        ]
    seeds["publish"] = [
        b"Mail jane.doe@uni-bonn.de or bob [at] host [dot] org; server 8.8.8.8, 2001:4860:4860::8888, v1.2.3.4.",
        f"Intro. {PUBLISH_ITEMS[0]} And then {PUBLISH_ITEMS[2]} darn, call +49 221".encode(),
        b"https://hot.example/girls/casino?x=pornhub",
    ]
    seeds["archive"] = _archive_seeds()
    warcs, dumps = _shared("warc"), _shared("wikipedia")
    if os.path.isdir(warcs):
        for name in sorted(os.listdir(warcs)):
            with open(os.path.join(warcs, name), "rb") as handle:
                seeds["warc"].append(handle.read(MAX_LEN))
    if os.path.isdir(dumps):
        for name in ("tinywiki-pages-articles.xml", "ltgwiki-pages-articles.xml", "fowiki-tiny-pages-articles.xml.bz2"):
            with open(os.path.join(dumps, name), "rb") as handle:
                data = handle.read()
            seeds["mediawiki"].append((bz2.decompress(data) if name.endswith(".bz2") else data)[:MAX_LEN])
    return seeds


def _archive_seeds() -> list[bytes]:
    """A real package's files (tzlocal, MIT) as a tarball and a zip, and the hostile archives of the tests."""
    import pathlib

    from tests import codedata

    files = codedata.with_extras(codedata.package_files("tzlocal", "tzlocal"))
    seeds = []
    with tempfile.TemporaryDirectory() as folder:
        root = pathlib.Path(folder)
        for index, path in enumerate((
            codedata.write_tar(root / "a.tar.gz", files, "tzlocal-main", "0" * 40, "alias.py"),
            codedata.write_zip(root / "a.zip", files, "tzlocal-main", None, "alias.py"),
            codedata.hostile_tar(root / "h.tar.gz", 20_000),
            codedata.hostile_zip(root / "h.zip", 20_000),
        )):  # fmt: skip
            seeds.append(bytes([(0, 2, 0, 2)[index]]) + path.read_bytes()[:MAX_LEN])
    return seeds


def write_seeds(folder: str) -> None:
    for target, inputs in seed_inputs().items():
        os.makedirs(os.path.join(folder, target), exist_ok=True)
        for index, data in enumerate(inputs):
            with open(os.path.join(folder, target, f"seed-{index:03d}"), "wb") as handle:
                handle.write(data)


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[1] == "seeds":
        write_seeds(argv[2])
        return
    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.exit(f"usage: python -m tests.fuzz seeds DIR | {'|'.join(TARGETS)} [libFuzzer flags] [DIR…]")
    target = TARGETS[argv[1]]
    atheris.Setup([argv[0], f"-max_len={MAX_LEN}", *argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
