"""Untrusted text inside Streamlit Markdown, shown as exactly that text (pure functions).

Everything a candidate typed (self-introduction, job title, company, the ``meta`` of a
session), everything a speech worker heard and everything the interviewer wrote (questions,
evaluations, model answers, error messages, stage names) reaches the dashboard from the bus.
Streamlit renders ``st.markdown``, ``st.caption``, ``st.info``…, expander labels and
``st.table`` cells as GitHub-flavoured Markdown, and the dashboard's cards are HTML inside
Markdown (``unsafe_allow_html``). HTML escaping alone is not enough there: ``![x](http://…)``
makes the interviewer's browser fetch that address, ``[x](…)`` and a bare ``www.…`` become
links, ``**``, backticks, ``$…$`` (math), ``:red[…]`` (Streamlit's directives), ``#`` or ``-``
at the start change the page's structure, and a blank line ends an HTML block so that the
Markdown after it is parsed again.

`literal` writes every ASCII punctuation character, every line break and leading
whitespace as a numeric character reference (``&#91;`` for ``[``). CommonMark never reads a
character reference as syntax, HTML decodes it back to the character, so the result shows
the text as written in both contexts: plain Markdown and HTML inside Markdown. Letters,
digits, spaces and non-ASCII text (Korean) stay as they are. Two plugins work on the
decoded text, though: GFM autolinks (``http://…``, ``www.…``, e-mail addresses) and emoji
codes (``:smile:``); an invisible word joiner (U+2060) after every ``:`` and ``@`` and
between ``www`` and its dot keeps them from matching. It is in the text a reader copies.
"""

from __future__ import annotations

import re
import string
from typing import Any

_REFERENCE = {ord(c): f"&#{ord(c)};" for c in string.punctuation}
# line breaks (a blank line would end an HTML block; a single one could start a list or a
# heading on the next line) and tabs (indentation makes a code block)
_REFERENCE.update({ord(c): f"&#{ord(c)};" for c in "\n\r\t"})
_LEADING_SPACE = re.compile(r"^ +")
# Two of Streamlit's Markdown plugins read the text *after* character references are
# decoded: GFM's autolinks (``http://…``, ``www.…``, ``name@host.org`` become links) and
# emoji codes (``:smile:``). An invisible word joiner after every colon and at-sign and
# inside "www." breaks their patterns.
_JOIN_AFTER = re.compile(r"[:@]|(?<=www)(?=\.)", re.IGNORECASE)
WORD_JOINER = "\u2060"
_PARAGRAPH_BREAK = re.compile(r"(?:\r\n|\r|\n)\s*(?:\r\n|\r|\n)")


def literal(value: Any) -> str:
    """`value` (None: empty) as Markdown/HTML that renders as exactly its text."""
    text = "" if value is None else str(value)
    text = _JOIN_AFTER.sub(lambda m: m.group() + WORD_JOINER, text).translate(_REFERENCE)
    # leading spaces: four of them make an indented code block
    return _LEADING_SPACE.sub(lambda m: "&#32;" * len(m.group()), text)


def literal_paragraphs(value: Any) -> list[str]:
    """`value` split at its blank lines, each paragraph made `literal` (one
    ``st.markdown`` each keeps a long text's paragraphs without reading its Markdown)."""
    text = "" if value is None else str(value)
    return [literal(part.strip()) for part in _PARAGRAPH_BREAK.split(text) if part.strip()]
