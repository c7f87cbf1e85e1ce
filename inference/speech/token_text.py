"""Whisper token ids → text, exact to the byte, so a character is never cut in two.

Whisper's tokenizer is a byte-level BPE: a token stands for bytes, not characters, and a
Hangul syllable (three UTF-8 bytes) that is rare in its training text is written with two or
three tokens. faster-whisper decodes each segment's tokens on their own, so wherever a
decode stops between those tokens the text gets a "�" (U+FFFD) for the partial character:

* at a segment boundary, when Whisper writes its timestamp pair in the middle of a
  character (the rest of the character opens the next segment of the same 30 s window);
* at the end of a window whose decoding was cut by the token budget (``max_new_tokens``)
  after the first bytes of a character: the rest was never generated.

`TokenText.segment_texts` decodes the segments of one window as one byte stream: the partial
character at a segment boundary is completed by the next segment's bytes, and is written in
that segment. Only bytes that no later token completes (the end of a cut window) or that are
not UTF-8 at all are dropped, and counted.
"""

from __future__ import annotations

import codecs
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Protocol

REPLACEMENT_CHARACTER = "\ufffd"


class ByteLevelTokenizer(Protocol):
    """The part of a Hugging Face ``tokenizers.Tokenizer`` this module uses."""

    def id_to_token(self, token_id: int) -> str | None: ...

    def token_to_id(self, token: str) -> int | None: ...


def _byte_level_characters() -> dict[str, int]:
    """The printable character the byte-level BPE writes for each byte (GPT-2's table:
    printable Latin-1 bytes stand for themselves, the other 68 are shifted past U+00FF)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    byte_of: dict[str, int] = {chr(b): b for b in printable}
    shifted = 0
    for b in range(256):
        if b not in printable:
            byte_of[chr(256 + shifted)] = b
            shifted += 1
    return byte_of


_BYTE_OF_CHARACTER = _byte_level_characters()


@dataclass
class DecodedSegments:
    """Texts of segments decoded together."""

    #: One text per segment, in the order given; never contains U+FFFD.
    texts: list[str]
    #: Bytes dropped because they are not a whole UTF-8 character: the end of a character
    #: whose decoding was cut, or bytes Whisper wrote that are no UTF-8 at all.
    dropped_bytes: int = 0


class TokenText:
    """Exact text of Whisper token ids (text tokens only: specials and timestamps are
    skipped, as faster-whisper's own decode does)."""

    def __init__(self, tokenizer: ByteLevelTokenizer) -> None:
        self._tokenizer = tokenizer
        eot = tokenizer.token_to_id("<|endoftext|>")
        if eot is None:
            raise ValueError("not a Whisper tokenizer: it has no <|endoftext|> token")
        #: Token ids from here on are special tokens and timestamps, not text.
        self.first_special = eot
        self._bytes: dict[int, bytes] = {}

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes one text token stands for (b"" for special tokens and timestamps)."""
        if token_id >= self.first_special or token_id < 0:
            return b""
        cached = self._bytes.get(token_id)
        if cached is None:
            piece = self._tokenizer.id_to_token(token_id)
            if piece is None:
                raise ValueError(f"token id {token_id} is not in the tokenizer's vocabulary")
            cached = bytes(_BYTE_OF_CHARACTER[c] for c in piece)
            self._bytes[token_id] = cached
        return cached

    def text_bytes(self, token_ids: Sequence[int]) -> bytes:
        return b"".join(self.token_bytes(t) for t in token_ids)

    def segment_texts(self, segments: Sequence[tuple[Hashable, Sequence[int]]]) -> DecodedSegments:
        """Texts of consecutive segments, each given as ``(window, token_ids)`` where
        `window` identifies the decoding pass the segment came from (faster-whisper's
        ``Segment.seek``). Segments of one window are one byte stream: a character split
        by a segment boundary is written whole, in the segment where it ends. A new window
        is a fresh decode, so a character left incomplete at a window's end is never
        completed: its bytes are dropped."""
        texts: list[str] = []
        dropped = 0
        decoder: codecs.IncrementalDecoder | None = None
        current_window: Hashable = None
        for window, token_ids in segments:
            if decoder is None or window != current_window:
                # "ignore" skips only bytes that can never be UTF-8; an incomplete
                # character at the end of a feed is held back for the next feed.
                decoder = codecs.getincrementaldecoder("utf-8")(errors="ignore")
                current_window = window
            data = self.text_bytes(token_ids)
            # Whisper writing U+FFFD itself (mojibake in its training captions) is no speech.
            text = decoder.decode(data).replace(REPLACEMENT_CHARACTER, "")
            # Bytes in minus bytes out: what was skipped, or is held back for a next
            # segment (subtracted again when that segment writes it).
            dropped += len(data) - len(text.encode("utf-8"))
            texts.append(text)
        return DecodedSegments(texts, dropped)


def without_partial_characters(word: str) -> str:
    """A word as faster-whisper wrote it, minus the U+FFFD it puts for bytes that are not a
    whole character. Its words come from one decode of the window's text tokens split where
    characters end, so a U+FFFD in a word marks exactly the bytes `segment_texts` drops
    (the end of a cut window, or bytes that are no UTF-8)."""
    return word.replace(REPLACEMENT_CHARACTER, "")
