"""The summary as one self-contained HTML page: its markdown converted, its figures inlined.

The page is made with raw HTML turned off: a name such as `<script>` in the
summary (escaped there by `format.text`) shows as text, never as markup.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import markdown

_FIGURE = re.compile(r'(<img alt="[^"]*" src=")(figures/[\w.-]+\.png)(")')


def to_html(markdown_text: str, base: Path, title: str) -> str:
    """The markdown as one self-contained HTML page: figures inlined, raw HTML shown as text."""

    def inline(match: re.Match) -> str:
        data = base64.b64encode((base / match.group(2)).read_bytes()).decode()
        return f"{match.group(1)}data:image/png;base64,{data}{match.group(3)}"

    converter = markdown.Markdown(extensions=["tables"])
    converter.preprocessors.deregister("html_block")  # markup in the text is shown, never parsed
    converter.inlinePatterns.deregister("html")
    body = _FIGURE.sub(inline, converter.convert(markdown_text))
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:3px 8px}"
        "th{background:#f3f3f3}img{max-width:100%}code{background:#f6f6f6}"
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{style}</style></head><body>\n{body}\n</body></html>\n"
    )
