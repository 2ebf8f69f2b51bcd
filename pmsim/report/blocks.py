"""A report as a list of blocks, rendered to Markdown and to HTML from the same data.

No Markdown library is among the dependencies, and the report needs only headings,
paragraphs, bullet lists, tables and figures: each block renders itself both ways.
"""

from __future__ import annotations

import html
from dataclasses import dataclass


@dataclass
class Heading:
    text: str
    level: int = 2

    def md(self) -> str:
        return f"{'#' * self.level} {self.text}"

    def html(self) -> str:
        return f"<h{self.level}>{html.escape(self.text)}</h{self.level}>"


@dataclass
class Para:
    text: str
    quote: bool = False

    def md(self) -> str:
        return f"> {self.text}" if self.quote else self.text

    def html(self) -> str:
        tag = "blockquote" if self.quote else "p"
        return f"<{tag}>{_inline(self.text)}</{tag}>"


@dataclass
class Bullets:
    items: list[str]

    def md(self) -> str:
        return "\n".join(f"- {i}" for i in self.items)

    def html(self) -> str:
        return "<ul>\n" + "\n".join(f"<li>{_inline(i)}</li>" for i in self.items) + "\n</ul>"


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    right: int = 1  # columns from this one on are numbers, right-aligned

    def md(self) -> str:
        def line(cells):
            return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

        align = ["---" if i < self.right else "---:" for i in range(len(self.header))]
        return "\n".join(
            [line(self.header), "|" + "|".join(align) + "|", *(line(r) for r in self.rows)]
        )

    def html(self) -> str:
        def cells(tag, row):
            return "".join(
                f"<{tag}{' class=num' if i >= self.right else ''}>{_inline(str(c))}</{tag}>"
                for i, c in enumerate(row)
            )

        body = "\n".join(f"<tr>{cells('td', r)}</tr>" for r in self.rows)
        return f"<table>\n<tr>{cells('th', self.header)}</tr>\n{body}\n</table>"


@dataclass
class Figure:
    path: str  # relative to the report
    caption: str

    def md(self) -> str:
        return f"![{self.caption}]({self.path})\n\n*{self.caption}*"

    def html(self) -> str:
        return (
            f'<figure><img src="{html.escape(self.path)}" alt="{html.escape(self.caption)}">'
            f"<figcaption>{_inline(self.caption)}</figcaption></figure>"
        )


def _inline(text: str) -> str:
    """Escape, then the one inline mark the report uses: `code`."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


_CSS = """body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em;line-height:1.45}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em}
th{background:#f3f3f3}.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1.5em 0}img{max-width:100%}figcaption{color:#444;font-style:italic}
blockquote{border-left:4px solid #ccc;margin-left:0;padding-left:1em;color:#333}code{background:#f3f3f3}"""


def to_markdown(blocks) -> str:
    return "\n\n".join(b.md() for b in blocks) + "\n"


def to_html(blocks, title: str) -> str:
    body = "\n".join(b.html() for b in blocks)
    return (
        f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>\n{body}\n</body></html>\n"
    )
