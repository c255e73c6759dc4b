"""User HTML is cleaned: common XSS payloads lose everything that could run or restyle."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from widgets.sanitize import escape_markdown, sanitize_html

DANGEROUS_TAGS = {
    *("script", "style", "iframe", "frame", "object", "embed", "svg", "math", "form"),
    *("input", "button", "base", "meta", "link", "body", "html", "textarea", "noscript"),
    *("template", "applet", "select", "option", "video", "audio", "source"),
}
URL_ATTRIBUTES = {"href", "src", "cite", "action", "formaction", "data", "srcset", "background"}
SAFE_IMAGE_DATA = re.compile(r"^data:image/(png|jpeg|gif|webp);base64,", re.I)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    handle_startendtag = handle_starttag


def tags_of(html: str) -> list[tuple[str, dict[str, str]]]:
    parser = _Tags()
    parser.feed(html)
    parser.close()
    return parser.tags


def assert_inert(html: str) -> None:
    """No tag, attribute or URL in `html` that a browser would run or style with."""
    for tag, attrs in tags_of(html):
        assert tag not in DANGEROUS_TAGS, (tag, html)
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name, html)
            assert name not in ("style", "class", "id", "srcdoc", "formaction"), (name, html)
            if name in URL_ATTRIBUTES:
                # Browsers ignore tabs, newlines and leading controls inside a scheme.
                squashed = re.sub(r"[\x00-\x20]", "", value).lower()
                assert not squashed.startswith(("javascript:", "vbscript:")), (value, html)
                if squashed.startswith("data:"):
                    assert tag == "img" and name == "src" and SAFE_IMAGE_DATA.match(value), html


PAYLOADS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<<script>script>alert(1)<</script>/script>",
    "<img src=x onerror=alert(1)>",
    '<img src="x" onerror  =  "alert(1)">',
    "<body onload=alert(1)>",
    "<details open ontoggle=alert(1)>x</details>",
    '<a href="javascript:alert(1)">x</a>',
    '<a href="JaVaScRiPt:alert(1)">x</a>',
    '<a href="  javascript:alert(1)">x</a>',
    '<a href="jav&#x09;ascript:alert(1)">x</a>',
    '<a href="&#106;avascript:alert(1)">x</a>',
    '<a href="vbscript:msgbox(1)">x</a>',
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    '<svg><a xlink:href="javascript:alert(1)"><text>x</text></a></svg>',
    '<div style="background:url(javascript:alert(1))">x</div>',
    '<div style="width: expression(alert(1))">x</div>',
    "<style>body{display:none}</style>",
    '<iframe src="https://evil.example"></iframe>',
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>',
    '<img src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+">',
    '<img src="data:text/html,<script>alert(1)</script>">',
    '<object data="javascript:alert(1)"></object>',
    '<embed src="javascript:alert(1)">',
    '<form action="javascript:alert(1)"><input type=submit></form>',
    "<button formaction=javascript:alert(1)>x</button>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<base href="javascript:alert(1)//">',
    "<link rel=stylesheet href=//evil.example/x.css>",
    "<!--<img src=x onerror=alert(1)>-->",
    '<img srcset="x 1x, javascript:alert(1) 2x">',
    '<table background="javascript:alert(1)"><tr><td>x</td></tr></table>',
    '<div class="gm-field-error" id="approve">a fake control</div>',
    '<video><source onerror="alert(1)"></video>',
    "<template><img src=x onerror=alert(1)></template>",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payload_comes_out_inert(payload: str):
    cleaned = sanitize_html(payload)
    assert_inert(cleaned)
    assert "alert(1)" not in "".join(v for _, attrs in tags_of(cleaned) for v in attrs.values())


def test_checker_itself_catches_what_it_should():
    # The assertions above mean something only if the checker fails on live payloads.
    for live in PAYLOADS[:2] + PAYLOADS[3:6] + PAYLOADS[7:9]:
        with pytest.raises(AssertionError):
            assert_inert(live)


@pytest.mark.parametrize(
    ("dirty", "clean"),
    [
        ("<script>alert(1)</script>safe", "safe"),
        ("<img src=x onerror=alert(1)>", '<img src="x">'),
        (
            '<a href="javascript:alert(1)">x</a>',
            '<a target="_blank" rel="noopener noreferrer nofollow">x</a>',
        ),
        ('<div style="color:red" class="c" id="i">x</div>', "<div>x</div>"),
        ("<svg onload=alert(1)><circle/></svg>after", "after"),
        ("<!-- hidden -->text", "text"),
    ],
)
def test_whole_output_of_typical_payloads(dirty: str, clean: str):
    assert sanitize_html(dirty) == clean


def test_document_markup_is_kept():
    html = (
        "<h2>Report</h2><p>See <a href='https://example.com/r?a=1&amp;b=2'>the <b>report</b></a>"
        " or <a href='mailto:ops@example.com'>mail</a>.</p>"
        "<table><thead><tr><th colspan='2'>Totals</th></tr></thead>"
        "<tbody><tr><td>a</td><td>1</td></tr></tbody></table>"
        "<ul><li><code>x</code></li></ul><pre>pre  text</pre>"
        "<img src='https://example.com/p.png' alt='plot' width='100'>"
        "<img src='data:image/png;base64,iVBORw0KGgo='>"
    )
    assert sanitize_html(html) == (
        '<h2>Report</h2><p>See <a href="https://example.com/r?a=1&amp;b=2" '
        'target="_blank" rel="noopener noreferrer nofollow">the <b>report</b></a>'
        ' or <a href="mailto:ops@example.com" target="_blank" rel="noopener noreferrer nofollow">'
        "mail</a>.</p>"
        '<table><thead><tr><th colspan="2">Totals</th></tr></thead>'
        "<tbody><tr><td>a</td><td>1</td></tr></tbody></table>"
        "<ul><li><code>x</code></li></ul><pre>pre  text</pre>"
        '<img src="https://example.com/p.png" alt="plot" width="100">'
        '<img src="data:image/png;base64,iVBORw0KGgo=">'
    )


def test_text_is_escaped_not_dropped():
    assert sanitize_html("1 < 2 & 3 > 2") == "1 &lt; 2 &amp; 3 &gt; 2"


def test_escape_markdown_shows_text_as_typed():
    assert escape_markdown("**bold** <b>x</b> [a](javascript:x)") == (
        r"\*\*bold\*\* &lt;b&gt;x&lt;/b&gt; \[a\]\(javascript:x\)"
    )
