"""Cleaning HTML that a run produced before a page shows it.

A script's result or display output is written by whoever wrote the script, and the
page that shows it belongs to whoever opens it (an operator, an approver, someone with
a share link). Anything that could run code or restyle the page is removed: scripts,
event handlers, `javascript:` and other active URLs, styles, frames, forms and SVG.
What stays is document markup: text formatting, lists, tables, links and raster images.

nh3 (Rust's ammonia) does the parsing, so malformed markup is read the way a browser
reads it, not the way a regular expression would guess.
"""

from __future__ import annotations

import html
import re

import nh3

ALLOWED_TAGS: frozenset[str] = frozenset(
    {
        *("a", "abbr", "b", "blockquote", "br", "caption", "cite", "code", "col", "colgroup"),
        *("dd", "del", "details", "div", "dl", "dt", "em", "figcaption", "figure"),
        *("h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "mark"),
        *("ol", "p", "pre", "q", "s", "samp", "small", "span", "strong", "sub", "summary"),
        *("sup", "table", "tbody", "td", "tfoot", "th", "thead", "time", "tr", "u", "ul", "var"),
    }
)
# No `style`, `class` or `id`: with them a result could overlay or mimic the studio's
# own controls (a fake "Approve" button), even with no script at all.
ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    "*": {"title", "lang", "dir"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan", "align"},
    "th": {"colspan", "rowspan", "align", "scope"},
    "col": {"span"},
    "colgroup": {"span"},
    "ol": {"start"},
    "time": {"datetime"},
    "blockquote": {"cite"},
    "q": {"cite"},
    "del": {"cite", "datetime"},
    "ins": {"cite", "datetime"},
}
# Tags removed together with everything inside them (the text of a script is no content).
DROPPED_WITH_CONTENT: frozenset[str] = frozenset(
    {
        *("script", "style", "template", "noscript", "iframe", "frame", "frameset"),
        *("object", "embed", "applet", "svg", "math", "textarea", "select", "title"),
        *("xmp", "noembed", "noframes", "plaintext", "head"),
    }
)
# `data:` is let through nh3's scheme check only so that `_only_image_data` can keep
# inline raster images (plots rendered to base64) and drop every other data: URL.
URL_SCHEMES: frozenset[str] = frozenset({"http", "https", "mailto", "data"})
_URL_ATTRIBUTES = {"href", "src", "cite"}
_IMAGE_DATA = re.compile(r"^data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=\s]*$", re.I)


def sanitize_html(html: str) -> str:
    """Return `html` with everything that could run code or restyle the page removed.

    Links keep `href` (http, https, mailto or relative) and open in a new tab with
    `rel="noopener noreferrer nofollow"`; images keep `src` (http, https, relative or a
    base64 PNG/JPEG/GIF/WebP data URL). Comments are dropped.
    """
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        clean_content_tags=set(DROPPED_WITH_CONTENT),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        attribute_filter=_only_image_data,
        url_schemes=set(URL_SCHEMES),
        strip_comments=True,
        link_rel="noopener noreferrer nofollow",
        set_tag_attribute_values={"a": {"target": "_blank"}},
    )


def _only_image_data(tag: str, attribute: str, value: str) -> str | None:
    """Drop a `data:` URL unless it is an image's base64 raster source."""
    if attribute not in _URL_ATTRIBUTES or not value.strip().lower().startswith("data:"):
        return value
    if tag == "img" and attribute == "src" and _IMAGE_DATA.match(value.strip()):
        return value
    return None


_MARKDOWN_SPECIALS = frozenset("\\`*_{}[]()#+-.!|~")


def escape_markdown(text: str) -> str:
    """Escape `text` so that a Markdown pane (an alert, a tooltip) shows it as typed."""
    escaped = html.escape(text, quote=False)
    return "".join(f"\\{c}" if c in _MARKDOWN_SPECIALS else c for c in escaped)
