"""A report as a list of blocks, rendered to Markdown and to one self-contained HTML page.

Both renderings come from the same blocks, which come from the records: nothing is edited by
hand. The HTML embeds its figures as data: URIs and its style inline, so it loads nothing from
anywhere; a small inline script marks on <body> how many figures decoded (for browser checks).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass

from sasa_bench.format import to_markdown


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    headers: Sequence[str]
    rows: Sequence[Sequence[object]]
    caption: str = ""


@dataclass(frozen=True)
class Links:
    label: str
    targets: tuple[tuple[str, str], ...]  # (text, relative path)


@dataclass(frozen=True)
class Figure:
    name: str  # file stem under figures/
    caption: str
    png: bytes


Block = Heading | Paragraph | Table | Links | Figure

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0 2em; } figcaption { font-size: 0.9em; color: #555; }
img { max-width: 100%; border: 1px solid #eee; }
.caption { font-size: 0.9em; color: #555; margin-bottom: 0.2em; }
"""
CHECK_SCRIPT = """
window.addEventListener('load', function () {
  var images = document.querySelectorAll('img');
  var ok = 0;
  images.forEach(function (img) { if (img.complete && img.naturalWidth > 0) ok++; });
  document.body.setAttribute('data-figures-loaded', ok + '/' + images.length);
});
"""


def render_markdown(blocks: Sequence[Block]) -> str:
    out = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {block.text}\n")
        elif isinstance(block, Paragraph):
            out.append(block.text + "\n")
        elif isinstance(block, Links):
            out.append(
                f"{block.label}: " + ", ".join(f"[{t}]({h})" for t, h in block.targets) + "\n"
            )
        elif isinstance(block, Table):
            if block.caption:
                out.append(f"*{block.caption}*\n")
            out.append(to_markdown(block.headers, block.rows))
        else:
            out.append(
                f"![{block.caption}](figures/{block.name}.png)\n\n*{block.caption}* "
                f"([SVG](figures/{block.name}.svg))\n"
            )
    return "\n".join(out)


def render_html(blocks: Sequence[Block], title: str) -> str:
    body = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{html.escape(block.text)}</p>")
        elif isinstance(block, Links):
            links = ", ".join(
                f'<a href="{html.escape(h)}">{html.escape(t)}</a>' for t, h in block.targets
            )
            body.append(f"<p>{html.escape(block.label)}: {links}</p>")
        elif isinstance(block, Table):
            caption = (
                f'<div class="caption">{html.escape(block.caption)}</div>' if block.caption else ""
            )
            head = "".join(f"<th>{html.escape(str(h))}</th>" for h in block.headers)
            rows = "".join(
                "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
                for row in block.rows
            )
            body.append(f"{caption}<table><tr>{head}</tr>{rows}</table>")
        else:
            data = base64.b64encode(block.png).decode()
            body.append(
                f'<figure><img alt="{html.escape(block.caption)}" '
                f'src="data:image/png;base64,{data}"><figcaption>{html.escape(block.caption)}'
                "</figcaption></figure>"
            )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style>"
        f"<script>{CHECK_SCRIPT}</script></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
