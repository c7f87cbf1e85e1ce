"""`dashboard.markdown_text.literal`: untrusted text inside Streamlit Markdown shows as
exactly that text. Checked here with a CommonMark parser (markdown-it-py, with raw HTML
on, as ``unsafe_allow_html`` has it) and an HTML parser; tests/test_dashboard_security.py
checks the same in the real dashboard in Chromium."""

from __future__ import annotations

import html
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from dashboard.markdown_text import literal, literal_paragraphs

HOSTILE = [
    "![x](http://127.0.0.1:9/pixel)",
    "[click](http://evil.example/)",
    "<img src=x onerror=alert(1)>",
    "<script>alert(1)</script>",
    "**bold** _em_ `code` ~~strike~~ $x^2$ :red[red] :smile: :material/home:",
    "# heading",
    "- item\n- item",
    "1. first",
    "> quote",
    "    indented code",
    "line one\n\nline two <b>after a blank line</b>",
    "</div><img src=x onerror=alert(1)>",
    "a\\*b\\",
    "www.evil.example and http://evil.example and someone@evil.example",
    "&amp; &#60; &lt;",
    "| a | b |\n|---|---|\n| c | d |",
    "한국어 자기소개서: **강조**",
    "[x]: http://evil.example\n\n[x]",
    "<http://evil.example>",
]


class Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def render(markdown: str) -> Collect:
    parser = Collect()
    out = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)
    # markdown-it ends a block with a line break of its own
    parser.feed(out.removesuffix("\n"))
    return parser


def shown(value: str) -> str:
    """The text a reader sees once `value` went through `literal` and back."""
    return html.unescape(literal(value)).replace("\u2060", "")


def text_of(page: Collect) -> str:
    """The page's text without the word joiners `literal` adds."""
    return "".join(page.text).replace("\u2060", "")


def as_parsed(text: str) -> str:
    """`text` as an HTML parser gives it back from character references (NUL is
    replaced) and without word joiners."""
    return text.replace("\x00", "\ufffd").replace("\u2060", "")


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_markdown_renders_as_its_own_text(text):
    page = render(literal(text))
    assert page.tags == ["p"]  # one paragraph of text: no link, image, list, heading, code
    assert text_of(page) == as_parsed(text)


@pytest.mark.parametrize("text", HOSTILE)
def test_inside_the_dashboards_html_it_stays_inside_its_element(text):
    # as the cards do: an HTML block around the text (a blank line would end the block)
    page = render(f'<div class="iv-q">{literal(text)}</div><div>after</div>')
    assert page.tags == ["div", "div"]
    assert text_of(page) == as_parsed(text) + "after"


def test_punctuation_and_line_breaks_become_character_references_and_nothing_else():
    assert literal("a-b") == "a&#45;b"
    assert literal("x\n\ny") == "x&#10;&#10;y"
    assert literal("   code") == "&#32;&#32;&#32;code"
    assert literal(None) == "" and literal(3) == "3"
    assert literal("자기소개 text 42") == "자기소개 text 42"
    assert shown(":smile:") == ":smile:"


def test_autolinks_and_emoji_codes_are_broken_by_an_invisible_word_joiner():
    # Streamlit's GFM autolinks and emoji codes read the decoded text (character
    # references do not stop them); a word joiner does, and is all that is added.
    decoded = html.unescape(literal("http://a.b www.c.d WWW.e.f me@x.org :smile: 10:30"))
    assert "://" not in decoded and "www." not in decoded.lower() and "@x" not in decoded
    assert ":smile:" not in decoded
    assert decoded.replace("\u2060", "") == "http://a.b www.c.d WWW.e.f me@x.org :smile: 10:30"


def test_paragraphs_are_split_at_blank_lines_and_each_is_literal():
    assert literal_paragraphs("first **a**\n\n  \nsecond\nline") == [
        "first &#42;&#42;a&#42;&#42;",
        "second&#10;line",
    ]
    assert literal_paragraphs("") == [] and literal_paragraphs(None) == []


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_any_text_round_trips_through_markdown(text):
    page = render(f"<div>{literal(text)}</div>")
    assert page.tags == ["div"]
    assert text_of(page) == as_parsed(text)
    # alone, a paragraph at most (Markdown trims the whitespace around a paragraph)
    page = render(literal(text))
    assert page.tags in ([], ["p"])
    assert text_of(page).strip() == as_parsed(text).strip()
