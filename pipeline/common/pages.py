"""What the curation and training reports share: figures drawn without a display (matplotlib's Agg canvas, no
global pyplot state), PNG bytes, the page style, and HTML pieces. Pages link only their own PNG files: they open
from disk, with no server and no network."""

from __future__ import annotations

import html
import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # matplotlib is imported where a figure is drawn: every curation worker imports this module
    from matplotlib.figure import Figure

STYLE = """body{font:15px/1.45 system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:2px 10px;border-bottom:1px solid #eee;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}tr.skipped td,tr.dropped td{color:#555}
img{max-width:100%;display:block;margin:.5em 0}pre{white-space:pre-wrap;background:#f6f6f6;padding:.6em;font-size:13px}
details{margin:.3em 0}summary{cursor:pointer}.note{color:#666}"""


def figure(width: float = 7.5, height: float = 3.2) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    drawn = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(drawn)
    return drawn


def png(drawn: Figure) -> bytes:
    buffer = io.BytesIO()
    drawn.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def page(title: str, body: list[str]) -> str:
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>"
    )


def image(name: str, source: str) -> str:
    return f'<img id="figure-{name}" src="{html.escape(source)}" alt="{html.escape(name)}">'
