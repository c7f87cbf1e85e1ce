"""Filler words: the one list and the one rule for finding them (pure functions).

The speech worker counts an utterance's fillers with `find_fillers` (they travel in
`contract.SpeakingMetrics.filler_words`); the offline engine uses the same function on a
transcript that came without metrics. Fillers are counted as standalone words only
(``um`` in "umbrella" is no filler):

* unambiguous fillers ("um", "uh", "er", "ah", "음", "어", "엄", ...) wherever they stand
  alone;
* words that are fillers only in some uses ("like", "you know", "I mean", "basically",
  "그", "저기", "뭐", "이제", "막", "약간", ...) only when set off by punctuation on both sides
  (start or end of the text counts as punctuation): "I, like, wrote it" and "그, 저는"
  count; "I like Python", "Do you know the answer?" and "그 사람" do not. Whisper marks
  such interjections with commas. A word repeated back to back ("그 그 저는", "이제 이제")
  also counts once as a filler.
* "kind of" / "sort of" also count as hedges after a pronoun or a form of "be" ("it was
  kind of hard", "I sort of knew"), never after a determiner ("what kind of database").

Both languages' lists apply to any text: candidates code-switch.
"""

from __future__ import annotations

import re

#: Sounds that are fillers wherever they stand alone.
EN_FILLERS: frozenset[str] = frozenset(
    {"um", "umm", "uh", "uhh", "uhm", "er", "erm", "ah", "hmm", "mm", "mhm"}
)
KO_FILLERS: frozenset[str] = frozenset(
    {"음", "으음", "음음", "엄", "어", "어어", "에", "흠", "아", "뭐랄까"}
)
#: Words and phrases that are fillers only when set off by punctuation (or stuttered).
EN_AMBIGUOUS: tuple[str, ...] = (
    "you know", "i mean", "sort of", "kind of", "you see", "like", "basically", "literally",
)  # fmt: skip
KO_AMBIGUOUS: tuple[str, ...] = (
    "그러니까", "그니까", "있잖아요", "저기", "그", "저", "뭐", "이제", "막", "약간", "좀", "그냥",
)  # fmt: skip
_HEDGE_BEFORE = frozenset(
    "i you we they he she it it's that's is was are were be been being am 'm".split()
)
_HEDGES = ("kind of", "sort of")

_TOKEN = re.compile(r"[\w']+", re.UNICODE)
_PUNCT = re.compile(r"[,.!?;:…—–\-()\"“”]")
_PURE = EN_FILLERS | KO_FILLERS
#: Longest phrase first, so "you know" wins over a shorter match at the same place.
_PHRASES = sorted((tuple(p.split()) for p in (*EN_AMBIGUOUS, *KO_AMBIGUOUS)), key=len, reverse=True)
_AMBIGUOUS_SINGLE = frozenset(p[0] for p in _PHRASES if len(p) == 1)


def _tokens_with_delimiters(text: str) -> list[tuple[str, bool, bool]]:
    """(token lower-cased, punctuation or start before, punctuation or end after)."""
    matches = list(_TOKEN.finditer(text))
    out = []
    for i, m in enumerate(matches):
        before = text[matches[i - 1].end() : m.start()] if i else None
        after = text[m.end() : matches[i + 1].start()] if i + 1 < len(matches) else None
        left = before is None or bool(_PUNCT.search(before))
        right = after is None or bool(_PUNCT.search(after))
        out.append((m.group(0).lower(), left, right))
    return out


def find_fillers(text: str) -> list[str]:
    """Fillers in `text`, in order, lower-cased (see the module docstring for the rules)."""
    tokens = _tokens_with_delimiters(text)
    words = [t for t, _, _ in tokens]
    found: list[str] = []
    i = 0
    while i < len(tokens):
        word, left, _ = tokens[i]
        if word in _PURE:
            found.append(word)
            i += 1
            continue
        matched = False
        for phrase in _PHRASES:
            n = len(phrase)
            if tuple(words[i : i + n]) != phrase:
                continue
            inner_punct = any(tokens[k][2] for k in range(i, i + n - 1))
            if inner_punct:
                continue
            right = tokens[i + n - 1][2]
            joined = " ".join(phrase)
            hedge = joined in _HEDGES and i > 0 and words[i - 1] in _HEDGE_BEFORE
            if (left and right) or hedge:
                found.append(joined)
                i += n
                matched = True
                break
        if matched:
            continue
        # "그 그 저는", "like like": an ambiguous word stuttered back to back
        if (
            word in _AMBIGUOUS_SINGLE
            and i + 1 < len(words)
            and words[i + 1] == word
            and not tokens[i][2]
        ):
            found.append(word)
            i += 1
            continue
        i += 1
    return found
