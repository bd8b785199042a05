"""Synthetic inputs for the demo, the tests and the benchmarks, the same bytes for the same seed.

WARC files: web pages with real boilerplate around real sentences (written for this project, in
`pipeline/data/`), plus the things a crawl always contains (exact and near duplicates, near-empty pages, non-HTML,
errors, other charsets, gzip and chunked bodies). Wikipedia dumps: multistream XML and its index, written the way
Wikimedia writes them. The demo's sample is both, with Wikipedia articles that the crawl republished, and a few
held-out articles to evaluate the model on.

    python -m pipeline synthetic-warc --output sample.warc.gz --pages 200
    python -m pipeline synthetic-sample --output demo-output/sample --pages 300 --articles 40 --seed 1
"""

from __future__ import annotations

import argparse
import bz2
import dataclasses
import datetime as dt
import gzip
import html as html_escape
import io
import json
import os
import random
import uuid
from importlib import resources
from xml.sax.saxutils import escape as xml_escape

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from pipeline.common.settings import UsageError

LANGUAGES = {"en": 0.55, "de": 0.15, "fr": 0.15, "es": 0.15}
TOPICS = ["Town life", "Science", "Travel", "History", "Food", "Nature", "Music", "Transport", "Schools"]
NAV = ["Home", "News", "World", "Business", "Science", "Culture", "Sport", "Travel", "Contact"]


def sentences(language: str) -> list[str]:
    text = resources.files("pipeline") / "data" / f"sentences_{language}.txt"
    return [line.strip() for line in text.read_text(encoding="utf-8").splitlines() if line.strip()]


def article_paragraphs(rng: random.Random, language: str) -> list[str]:
    """Three to five paragraphs of distinct sentences, as a real article has."""
    pool = sentences(language)
    count = min(len(pool), rng.randint(12, 18))
    chosen = rng.sample(pool, count)
    cuts = sorted(rng.sample(range(2, count - 1), rng.randint(2, 4)))
    return [" ".join(chosen[a:b]) for a, b in zip([0, *cuts], [*cuts, count])]


def vocabulary() -> list[str]:
    """Every distinct word of the bundled sentences (about a thousand)."""
    found: dict[str, None] = {}
    for language in LANGUAGES:
        for sentence in sentences(language):
            for word in sentence.split():
                found.setdefault(word.strip(".,;:!?()«»\"'").lower(), None)
    return [word for word in found if word]


def word_document(rng: random.Random, words: int, vocab: list[str]) -> str:
    """Words drawn with Zipf-like weights: unrelated documents share almost no 5-word shingles, as
    unrelated web pages do, and any document size is cheap to make (dedup tests and benchmarks)."""
    weights = [1.0 / (rank + 1) for rank in range(len(vocab))]
    return " ".join(rng.choices(vocab, weights=weights, k=words))


def edit_words(rng: random.Random, text: str, fraction: float, vocab: list[str]) -> str:
    """A near copy: `fraction` of the words replaced at random positions."""
    tokens = text.split()
    for position in rng.sample(range(len(tokens)), round(fraction * len(tokens))):
        tokens[position] = rng.choice(vocab)
    return " ".join(tokens)


SPAM_PRODUCTS = [
    "cheap watches",
    "casino bonus",
    "weight loss pills",
    "payday loans",
    "crypto signals",
    "free followers",
]
SPAM_PHRASES = [
    "best price guaranteed",
    "click here now",
    "limited offer",
    "buy now",
    "100% free",
    "no credit check",
    "act fast",
    "top rated",
    "lowest price online",
    "order today",
]


def spam_document(rng: random.Random) -> str:
    """A page of the kind a quality classifier should drop: keyword stuffing, calls to click, prices and phone
    numbers, in short repeated lines (the tests' and the ablations' negatives)."""
    product = rng.choice(SPAM_PRODUCTS)
    lines = []
    for _ in range(rng.randint(6, 14)):
        kind = rng.random()
        if kind < 0.4:
            lines.append(f"{product.title()} {rng.choice(SPAM_PHRASES)}!!! {rng.choice(SPAM_PHRASES).upper()}")
        elif kind < 0.7:
            keywords = rng.sample(SPAM_PHRASES, 4)
            lines.append(", ".join([product, *keywords, f"{product} {rng.randint(2020, 2026)}"]))
        elif kind < 0.85:
            lines.append(
                f"Only ${rng.randint(1, 99)}.{rng.randint(0, 99):02d} - call 1-800-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}"
            )
        else:
            lines.append(
                f"Visit www.{product.replace(' ', '-')}-{rng.randint(1, 999)}.example.com {rng.choice(SPAM_PHRASES)}"
            )
    return "\n".join(lines)


def article_page(title: str, paragraphs: list[str], language: str, charset: str | None = "utf-8") -> str:
    """An article page with navigation, a sidebar and a footer around the main text."""
    esc = html_escape.escape
    nav = "".join(f'<li><a href="/{item.lower()}/">{item}</a></li>' for item in NAV)
    body = "".join(f"<p>{esc(p)}</p>" for p in paragraphs)
    meta = f'<meta charset="{charset}">' if charset else ""
    return (
        f'<!DOCTYPE html><html lang="{language}"><head>{meta}<title>{esc(title)} | Example Media</title>'
        "<script>window.dataLayer=[];function track(){}</script><style>body{font:16px serif}</style></head>"
        f'<body><header><a href="/" class="logo">Example Media</a><nav><ul>{nav}</ul></nav></header>'
        f'<main><article><h1>{esc(title)}</h1><p class="byline">By Staff Writer</p>{body}</article></main>'
        '<aside><h3>Most read</h3><ul><li><a href="/a">Weather warning</a></li><li><a href="/b">Local elections</a>'
        '</li><li><a href="/c">Cup final</a></li></ul></aside>'
        "<footer><p>© 2026 Example Media. All rights reserved.</p>"
        '<p>This site uses cookies. <a href="/privacy">Privacy policy</a> · <a href="/terms">Terms of use</a></p>'
        "</footer></body></html>"
    )


def sentence_pages(sentences: dict[str, list[str]], pages: int, seed: int = 0) -> list[Response]:
    """Article pages in the languages of `sentences` (language → sentences, as in ../shared/fixtures/langid), in
    turn, each of 6 to 14 of that language's sentences in paragraphs of 2 to 4: a crawl in many languages."""
    rng = random.Random(f"sentence-pages-{seed}")
    languages = sorted(sentences)
    responses = []
    for index in range(pages):
        language = languages[index % len(languages)]
        chosen = rng.sample(sentences[language], min(len(sentences[language]), rng.randint(6, 14)))
        paragraphs = [" ".join(chosen[start : start + 3]) for start in range(0, len(chosen), 3)]
        body = article_page(f"{language} {index}", paragraphs, language).encode("utf-8")
        responses.append(Response(f"https://{language}.example.org/{index}.html", body=body))
    return responses


def boilerplate_only_html() -> str:
    nav = "".join(f'<li><a href="/{item.lower()}/">{item}</a></li>' for item in NAV)
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Index</title></head><body>'
        f"<nav><ul>{nav}</ul></nav><footer><p>© 2026 Example Media.</p></footer></body></html>"
    )


@dataclasses.dataclass
class Response:
    url: str
    status: str = "200 OK"
    content_type: str = "text/html; charset=utf-8"
    body: bytes = b""
    extra_headers: tuple = ()
    record_id: str | None = None


def write_warc(
    stream,
    responses: list[Response],
    date: dt.datetime | None = None,
    gzip_records: bool = True,
    ids: random.Random | None = None,
) -> None:
    """Write a warcinfo record, then a request and a response record for each response. Record ids come from
    `ids` (the same WARC for the same seed), else are random as a crawler's are."""

    def record_id() -> str:
        value = uuid.UUID(int=ids.getrandbits(128), version=4) if ids else uuid.uuid4()
        return f"<{value.urn}>"

    writer = WARCWriter(stream, gzip=gzip_records)
    date = date or dt.datetime(2026, 1, 15, 12, 0, 0, tzinfo=dt.UTC)
    info = writer.create_warcinfo_record("synthetic.warc.gz", {"software": "lmforge synthetic"})
    info.rec_headers.replace_header("WARC-Record-ID", record_id())
    info.rec_headers.replace_header("WARC-Date", date.strftime("%Y-%m-%dT%H:%M:%SZ"))
    writer.write_record(info)
    for index, response in enumerate(responses):
        stamp = (date + dt.timedelta(seconds=index)).strftime("%Y-%m-%dT%H:%M:%SZ")
        request = writer.create_warc_record(
            response.url,
            "request",
            payload=io.BytesIO(f"GET / HTTP/1.1\r\nHost: {response.url.split('/')[2]}\r\n\r\n".encode()),
            warc_headers_dict={"WARC-Date": stamp, "WARC-Record-ID": record_id()},
        )
        headers = [("Content-Type", response.content_type), *response.extra_headers]
        if not any(name.lower() == "transfer-encoding" for name, _ in response.extra_headers):
            headers.append(("Content-Length", str(len(response.body))))
        warc_headers = {"WARC-Date": stamp, "WARC-Record-ID": response.record_id or record_id()}
        record = writer.create_warc_record(
            response.url,
            "response",
            payload=io.BytesIO(response.body),
            http_headers=StatusAndHeaders(response.status, headers, protocol="HTTP/1.1"),
            warc_headers_dict=warc_headers,
        )
        writer.write_record(request)
        writer.write_record(record)


def chunked(body: bytes, size: int = 500) -> bytes:
    parts = [b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size)]
    return b"".join(parts) + b"0\r\n\r\n"


def sample_responses(pages: int, seed: int = 0, host: str = "news.example.com") -> list[Response]:
    """A crawl-like mix: mostly articles in four languages, with exact and near duplicates, near-empty and
    short pages, non-HTML, HTTP errors, legacy charsets, gzip and chunked bodies."""
    rng = random.Random(seed)
    responses: list[Response] = []
    articles: list[tuple[bytes, str, list[str]]] = []  # (page, language, paragraphs)
    for index in range(pages):
        url = f"https://{host}/{index // 100}/article-{index}.html"
        roll = rng.random()
        if roll < 0.04:
            responses.append(
                Response(
                    url.replace(".html", ".png"),
                    content_type="image/png",
                    body=b"\x89PNG\r\n\x1a\n" + rng.randbytes(200),
                )
            )
        elif roll < 0.06:
            responses.append(Response(url, status="404 Not Found", body=b"<html><body>Not found</body></html>"))
        elif roll < 0.09:
            responses.append(Response(url, body=boilerplate_only_html().encode()))
        elif roll < 0.13:
            language = rng.choice(list(LANGUAGES))
            responses.append(
                Response(url, body=article_page("Notice", [rng.choice(sentences(language))], language).encode())
            )
        elif roll < 0.21 and articles:
            responses.append(Response(url, body=rng.choice(articles)[0]))  # the same article at another URL
        elif roll < 0.25 and articles:
            # republished with a new title and a correction appended: a near-duplicate for MinHash
            _, language, paragraphs = rng.choice(articles)
            correction = f"Correction: an earlier version of this article gave the wrong date ({index})."
            republished = article_page(f"Republished ({index})", [*paragraphs, correction], language)
            responses.append(Response(url, body=republished.encode("utf-8")))
        else:
            language = rng.choices(list(LANGUAGES), weights=list(LANGUAGES.values()))[0]
            paragraphs = article_paragraphs(rng, language)
            title = f"{rng.choice(TOPICS)}: {rng.choice(['a report', 'notes', 'a letter', 'the week'])} ({index})"
            encoding_roll = rng.random()
            if language != "en" and encoding_roll < 0.25:
                # a legacy charset, declared only in the HTTP header
                page = article_page(title, paragraphs, language, charset=None).encode("iso-8859-1", "replace")
                responses.append(Response(url, content_type="text/html; charset=ISO-8859-1", body=page))
                continue
            page = article_page(title, paragraphs, language).encode("utf-8")
            articles.append((page, language, paragraphs))
            if encoding_roll < 0.35:
                responses.append(
                    Response(url, body=gzip.compress(page, mtime=0), extra_headers=(("Content-Encoding", "gzip"),))
                )
            elif encoding_roll < 0.45:
                responses.append(Response(url, body=chunked(page), extra_headers=(("Transfer-Encoding", "chunked"),)))
            else:
                responses.append(Response(url, body=page))
    return responses


def write_sample_warc(
    path: str, pages: int = 200, seed: int = 0, host: str = "news.example.com", extra: list[Response] | None = None
) -> None:
    """`sample_responses`, then `extra` spread among them at places the seed chooses; the same bytes for the same
    arguments."""
    responses = sample_responses(pages, seed, host)
    rng = random.Random(f"placement-{seed}")
    for response in extra or []:
        responses.insert(rng.randint(0, len(responses)), response)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as stream:
        write_warc(stream, responses, ids=random.Random(f"record-ids-{seed}-{host}"))


# Wikipedia dumps


def page_xml(page_id: int, title: str, wikitext: str, timestamp: str, ns: int = 0, redirect: str = "") -> str:
    """One <page> with one revision, as in a pages-articles dump."""
    redirect_tag = f'<redirect title="{xml_escape(redirect)}" />' if redirect else ""
    return (
        f"<page><title>{xml_escape(title)}</title><ns>{ns}</ns><id>{page_id}</id>{redirect_tag}"
        f"<revision><id>{page_id * 10}</id><timestamp>{timestamp}</timestamp>"
        f'<text xml:space="preserve">{xml_escape(wikitext)}</text></revision></page>'
    )


def dump_header(dbname: str, language: str) -> str:
    return (
        f'<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" xml:lang="{language}"><siteinfo>'
        f"<sitename>Wikipedia</sitename><dbname>{dbname}</dbname>"
        f"<base>https://{language}.wikipedia.org/wiki/Main_Page</base>"
        '<namespaces><namespace key="0" /><namespace key="1">Talk</namespace>'
        '<namespace key="14">Category</namespace></namespaces></siteinfo>'
    )


def dump_streams(header: str, pages: list[str], per_stream: int) -> list[bytes]:
    """The bz2 streams of a multistream dump: the header, the pages `per_stream` at a time, the closing tag."""
    groups = ["".join(pages[i : i + per_stream]) for i in range(0, len(pages), per_stream)]
    return [bz2.compress(part.encode()) for part in (header, *groups, "</mediawiki>")]


def write_dump(dump: str, index: str, streams: list[bytes], titles: list[tuple[int, str]], per_stream: int) -> None:
    """The dump and its index (`offset:page id:title` per page, bz2) from `dump_streams`' streams."""
    offsets = [0]
    for stream in streams:
        offsets.append(offsets[-1] + len(stream))
    lines = [f"{offsets[1 + i // per_stream]}:{page_id}:{title}" for i, (page_id, title) in enumerate(titles)]
    with open(dump, "wb") as out:
        out.write(b"".join(streams))
    with open(index, "wb") as out:
        out.write(bz2.compress("\n".join(lines).encode()))


def wiki_article(rng: random.Random, title: str, paragraphs: list[str]) -> str:
    """Wikitext around plain paragraphs: an infobox, a bold lead with a link and a reference, a section, a
    reference list and a category, which the cleaner removes."""
    lead, *rest = paragraphs
    words = lead.split(" ")
    at = rng.randrange(1, len(words) - 1)
    words[at] = f"[[{words[at].strip('.,;:')} (topic)|{words[at]}]]"
    bold = "'''"
    return (
        f"{{{{Infobox place|name={title}|image=Sample.jpg}}}}\n{bold}{title}{bold}: {' '.join(words)}"
        f"<ref>{{{{cite web|url=https://example.org|title=Source}}}}</ref>\n\n== History ==\n"
        + "\n\n".join(rest)
        + f"\n\n== References ==\n{{{{reflist}}}}\n[[Category:{title.split()[0]}]]"
    )


SAMPLE_FILE = "sample.json"  # the sample's files, for the steps that read them


@dataclasses.dataclass
class Sample:
    """The demo's inputs, as `write_sample` wrote them (and listed them in `sample.json`)."""

    warc: str
    dump: str
    index: str
    heldout: str  # JSON lines of articles in neither source, to evaluate on
    republished: list[str]  # titles of the Wikipedia articles the crawl has too


def write_sample(folder: str, pages: int = 300, articles: int = 40, seed: int = 0, republished: int = 6) -> Sample:
    """A crawl and an English Wikipedia dump of `articles` articles (and a talk page and a redirect), in which the
    crawl republished `republished` of the articles, so that cross-source deduplication keeps the Wikipedia copy;
    and held-out articles. The same files for the same arguments."""
    os.makedirs(folder, exist_ok=True)
    rng = random.Random(f"wikipedia-{seed}")
    written = [(f"{rng.choice(TOPICS)} in Place {n}", article_paragraphs(rng, "en")) for n in range(1, articles + 1)]
    pages_xml, titles = [], []
    for page_id, (title, paragraphs) in enumerate(written, 1):
        timestamp = f"2025-{page_id % 12 + 1:02d}-{page_id % 28 + 1:02d}T10:00:00Z"
        pages_xml.append(page_xml(page_id, title, wiki_article(rng, title, paragraphs), timestamp))
        titles.append((page_id, title))
    first = written[0][0]
    pages_xml.append(page_xml(articles + 1, f"Talk:{first}", "Discussion.", "2025-01-01T10:00:00Z", ns=1))
    pages_xml.append(
        page_xml(articles + 2, "Old name", f"#REDIRECT [[{first}]]", "2025-01-01T10:00:00Z", redirect=first)
    )
    titles += [(articles + 1, f"Talk:{first}"), (articles + 2, "Old name")]
    sample = Sample(
        warc=os.path.join(folder, "sample.warc.gz"),
        dump=os.path.join(folder, "enwiki-sample-pages-articles-multistream.xml.bz2"),
        index=os.path.join(folder, "enwiki-sample-pages-articles-multistream-index.txt.bz2"),
        heldout=os.path.join(folder, "heldout.jsonl"),
        republished=[title for title, _ in rng.sample(written, min(republished, len(written)))],
    )
    write_dump(sample.dump, sample.index, dump_streams(dump_header("enwiki", "en"), pages_xml, 10), titles, 10)
    by_title = dict(written)
    copies = [
        Response(
            f"https://mirror.example.org/wiki/{title.replace(' ', '_')}",
            body=article_page(title, by_title[title], "en").encode(),
        )
        for title in sample.republished
    ]
    write_sample_warc(sample.warc, pages, seed, extra=copies)
    heldout = random.Random(f"heldout-{seed}")
    with open(sample.heldout, "w", encoding="utf-8") as out:
        for number in range(12):
            language = heldout.choices(list(LANGUAGES), weights=list(LANGUAGES.values()))[0]
            text = "\n\n".join(article_paragraphs(heldout, language))
            out.write(json.dumps({"id": f"heldout-{number}", "text": text}, ensure_ascii=False) + "\n")
    listing = {key: os.path.basename(value) if isinstance(value, str) else value for key, value in vars(sample).items()}
    with open(os.path.join(folder, SAMPLE_FILE), "w", encoding="utf-8") as out:
        json.dump(listing, out, indent=2)  # names within the folder: the same file wherever the folder is
    return sample


def build_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "synthetic-warc",
        help="write a WARC of generated pages (for demos, tests and benchmarks)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--output", required=True, help="the .warc.gz file to write")
    parser.add_argument("--pages", type=int, default=200, help="response records to write (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--host", default="news.example.com")
    parser.set_defaults(run=lambda args, extra: _run_warc(args))

    sample = subparsers.add_parser(
        "synthetic-sample",
        help="write the demo's inputs: a WARC, a Wikipedia dump the crawl overlaps, held-out articles",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sample.add_argument("--output", required=True, metavar="DIR", help="the folder to write them in")
    sample.add_argument("--pages", type=int, default=300, help="WARC response records (default: %(default)s)")
    sample.add_argument("--articles", type=int, default=40, help="Wikipedia articles (default: %(default)s)")
    sample.add_argument("--seed", type=int, default=0)
    sample.set_defaults(run=lambda args, extra: _run_sample(args))


def _run_warc(args) -> int:
    write_sample_warc(args.output, args.pages, args.seed, args.host)
    print(f"wrote {args.output} ({args.pages} responses)")
    return 0


def _run_sample(args) -> int:
    if args.articles < 1 or args.pages < 1:
        raise UsageError(f"--pages and --articles: at least 1 each (got {args.pages} and {args.articles})")
    sample = write_sample(args.output, args.pages, args.articles, args.seed)
    print(f"wrote {sample.warc}, {sample.dump} (and its index) and {sample.heldout}")
    print(f"the crawl republished {len(sample.republished)} of the {args.articles} Wikipedia articles")
    return 0
