"""Main-text extraction, under a per-document time limit: trafilatura (FineWeb's extractor, the default) or
resiliparse (DCLM's: about ten times faster, less precise about what is boilerplate).

`extract_text` and `extract_resiliparse` are the plain functions (`EXTRACTORS` by name); `page_text` is the
cascade's cheap text for language identification. `IsolatedExtractor`
runs one in a child process it owns, so a pathological page that makes lxml or a regex spin (or crash) costs one
document, not the worker: on a timeout the child is killed and a fresh one started. Threads cannot be interrupted
inside C code and SIGALRM only works on the main thread, which Beam's SDK workers do not run bundles on.

The child is a plain interpreter that imports this module only. multiprocessing's spawn would also re-import the
parent's main module in it: in a Beam SDK worker that is Beam's worker module, 0.9 s of imports before each
child's first page (and its resource-tracker process besides).
"""

from __future__ import annotations

import logging
import multiprocessing.connection
import os
import socket
import subprocess
import sys
import time

from pipeline.steps.xpaths import speed_up_trafilatura

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
_STARTUP_TIMEOUT_S = 300.0
# The child's command: `serve` on the connection's descriptor, with favor_precision and the extractor's name.
_CHILD = (
    "import sys; from pipeline.steps.extract import serve; serve(int(sys.argv[1]), sys.argv[2] == '1', sys.argv[3])"
)


def extract_text(html_text: str, url: str | None = None, *, favor_precision: bool = True) -> str | None:
    """Main text of a page, paragraphs separated by newlines; None when there is none.

    Settings follow FineWeb (precision over recall, no comments) except one: trafilatura's `deduplicate`
    is off. It drops paragraphs seen in earlier pages through a cache that lives as long as the process,
    so a page's text would depend on which pages the same worker saw before it, and runs would differ with
    the number of workers. Repeated pages are the dedup stages' job."""
    import trafilatura

    return trafilatura.extract(
        html_text,
        url=url,
        favor_precision=favor_precision,
        include_comments=False,
        include_tables=True,
        deduplicate=False,
        with_metadata=False,
    )


def extract_resiliparse(html_text: str, url: str | None = None) -> str | None:
    """Main text of a page by resiliparse's main-content heuristics, as DCLM extracted it (block structure kept as
    line breaks, no alt texts, links or form fields); None when there is none. `url` is unused (the signature is
    `extract_text`'s)."""
    from resiliparse.extract.html2text import extract_plain_text

    text = extract_plain_text(html_text, preserve_formatting=True, main_content=True, alt_texts=False)
    return text if text and text.strip() else None


# Containers of a page's navigation and chrome rather than its content (HTML5's sectioning elements and forms)
NOT_CONTENT = ("nav", "header", "footer", "aside", "form")


def page_text(html_text: str) -> str | None:
    """The text of a page without its navigation and chrome (`NOT_CONTENT`), by resiliparse without its
    main-content heuristics: the extraction cascade's cheap text, identified for language before the real
    extraction. 0.39 ms a page against 0.78 ms for `extract_resiliparse`, with the same prefilter decision on every
    page of the cascade's benchmark (bench/bench_prefilter_text.py). None when there is no text."""
    from resiliparse.extract.html2text import extract_plain_text

    text = extract_plain_text(
        html_text, preserve_formatting=True, main_content=False, alt_texts=False, skip_elements=list(NOT_CONTENT)
    )
    return text if text and text.strip() else None


EXTRACTORS = {"trafilatura": extract_text, "resiliparse": extract_resiliparse}


class ExtractionTimeout(Exception):
    pass


class ExtractionFailed(Exception):
    pass


def plain_element_classes() -> None:
    """lxml.html makes the Python object of every element it hands out through a class lookup written in Python
    (it gives forms, inputs, selects, textareas and labels classes of their own): about 7% of trafilatura's time.
    Extraction reads nothing those classes add, so in the extraction child the HTML parsers (trafilatura's and
    lxml.html's default) make plain HtmlElements through lxml's lookup in C instead. The texts are the same
    (tests/test_extract.py compares; 2,336 real and generated pages did too). Process-wide: the child only."""
    import lxml.html
    import trafilatura.utils
    from lxml import etree

    lookup = etree.ElementDefaultClassLookup(
        element=lxml.html.HtmlElement,
        comment=lxml.html.HtmlComment,
        pi=lxml.html.HtmlProcessingInstruction,
        entity=lxml.html.HtmlEntity,
    )
    for parser in (getattr(trafilatura.utils, "HTML_PARSER", None), lxml.html.html_parser):
        if parser is not None:
            parser.set_element_class_lookup(lookup)


def serve(fd: int, favor_precision: bool, extractor: str) -> None:
    """The child's loop: (html, url) requests on the connection at `fd`, ("ok", text) or ("error", why) answers;
    None or the parent's end closing stops it."""
    conn = multiprocessing.connection.Connection(fd)
    import resiliparse.extract.html2text  # noqa: F401  (imported before the clock of the first page starts)
    import trafilatura  # noqa: F401

    plain_element_classes()
    speed_up_trafilatura()
    # trafilatura logs every page without main text as an error; the caller counts those instead.
    for name in ("trafilatura", "htmldate", "courlan"):
        logging.getLogger(name).setLevel(logging.CRITICAL)

    conn.send(("ready", None))
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        if request is None:
            return
        html_text, url = request
        try:
            if extractor == "trafilatura":
                text = extract_text(html_text, url, favor_precision=favor_precision)
            else:
                text = EXTRACTORS[extractor](html_text, url)
            conn.send(("ok", text))
        except Exception as exc:  # any failure belongs to this page only
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class IsolatedExtractor:
    """An extractor of `EXTRACTORS` in a child process with a wall-clock limit per page. Call `close()` when done."""

    def __init__(
        self, timeout_s: float = DEFAULT_TIMEOUT_S, favor_precision: bool = True, extractor: str = "trafilatura"
    ):
        if extractor not in EXTRACTORS:
            raise ValueError(f"unknown extractor {extractor!r} (extractors: {', '.join(EXTRACTORS)})")
        self.timeout_s = timeout_s
        self.favor_precision = favor_precision
        self.extractor = extractor
        self._process: subprocess.Popen | None = None
        self._conn: multiprocessing.connection.Connection | None = None
        self._deadline = 0.0
        self._send_error: Exception | None = None

    def start(self) -> None:
        """Start the child now rather than on the first page (its imports take a few tenths of a second)."""
        ours, theirs = socket.socketpair()
        environment = dict(os.environ, PYTHONPATH=os.pathsep.join(path for path in sys.path if path))
        with theirs:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(theirs.fileno()), str(int(self.favor_precision)), self.extractor],
                pass_fds=[theirs.fileno()],
                env=environment,
                stdin=subprocess.DEVNULL,
            )
        self._conn = multiprocessing.connection.Connection(ours.detach())
        try:
            started = self._conn.poll(_STARTUP_TIMEOUT_S) and self._conn.recv()[0] == "ready"
        except (EOFError, OSError):
            started = False
        if not started:
            self._kill()
            raise ExtractionFailed("the extractor process did not start (see its stderr)")

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(5)
        if self._conn is not None:
            self._conn.close()
        self._process = self._conn = None

    def submit(self, html_text: str, url: str | None = None) -> None:
        """Hands a page to the child and returns at once; `result()` collects it. The child works on it
        while the caller does something else (language ID and filters of the previous page), and
        because the child is idle whenever a page is sent, neither side can block on a full pipe."""
        if self._process is None or self._process.poll() is not None:
            self._kill()
            self.start()
        self._deadline = time.monotonic() + self.timeout_s
        assert self._conn is not None
        try:
            self._conn.send((html_text, url))
            self._send_error = None
        except (BrokenPipeError, ConnectionResetError, OSError) as exc:
            self._send_error = exc

    def result(self) -> str | None:
        """The text of the page last submitted; raises ExtractionTimeout or ExtractionFailed."""
        try:
            if self._send_error is not None:
                raise self._send_error
            assert self._conn is not None, "submit() comes first"
            if not self._conn.poll(max(0.0, self._deadline - time.monotonic())):
                self._kill()
                raise ExtractionTimeout(f"no result within {self.timeout_s}s")
            status, value = self._conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError, OSError) as exc:
            self._kill()
            raise ExtractionFailed(f"extractor process died: {exc!r}")
        if status == "error":
            raise ExtractionFailed(value)
        return value

    def __call__(self, html_text: str, url: str | None = None) -> str | None:
        self.submit(html_text, url)
        return self.result()

    def close(self) -> None:
        if self._conn is not None and self._process is not None and self._process.poll() is None:
            try:
                self._conn.send(None)
                self._process.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._kill()

    def __enter__(self) -> IsolatedExtractor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
