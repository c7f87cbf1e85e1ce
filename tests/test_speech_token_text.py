"""Whisper token ids → text without "�": the real multilingual tokenizer (Whisper `base`, as
its registry package ships it), real token sequences that split a Hangul syllable."""

from __future__ import annotations

from pathlib import Path

import pytest
import tokenizers
from faster_whisper.tokenizer import Tokenizer as FasterWhisperTokenizer

from inference.speech.models import SOURCES, _package_dir
from inference.speech.token_text import TokenText, without_partial_characters

#: What Whisper base wrote for fast espeak-ng Korean ("저는 파이썬과 파이토치를 …") when
#: the token budget cut its window: the last token holds the first two bytes of "타"
#: (ED 83 80), whose last byte was never generated. faster-whisper wrote
#: " 저는 파이콘과 파이터 시리용 파스�" into the transcript.
CUT_WINDOW = [50364, 10551, 15390, 3946, 121, 246, 7097, 15390, 1129, 8528, 24452, 2250]
CUT_WINDOW += [8761, 15390, 9605, 225]
#: The tokens that came next in the same window once the budget allowed them.
CUT_WINDOW_REST = [2366, 34521, 50556]


@pytest.fixture(scope="module")
def hf_tokenizer() -> tokenizers.Tokenizer:
    source = SOURCES["base"]
    data = _package_dir(source.package, source.distribution) / source.other_files
    return tokenizers.Tokenizer.from_file(str(Path(data, "tokenizer.json")))


@pytest.fixture(scope="module")
def token_text(hf_tokenizer: tokenizers.Tokenizer) -> TokenText:
    return TokenText(hf_tokenizer)


@pytest.fixture(scope="module")
def faster_whisper_tokenizer(hf_tokenizer: tokenizers.Tokenizer) -> FasterWhisperTokenizer:
    return FasterWhisperTokenizer(hf_tokenizer, True, task="transcribe", language="ko")


def _split_syllable(hf_tokenizer: tokenizers.Tokenizer, token_text: TokenText, text: str):
    """`text`'s tokens and the first index inside a syllable (where the bytes so far
    are not whole characters)."""
    ids = hf_tokenizer.encode(text, add_special_tokens=False).ids
    for cut in range(1, len(ids)):
        try:
            token_text.text_bytes(ids[:cut]).decode("utf-8")
        except UnicodeDecodeError:
            return ids, cut
    raise AssertionError(f"no token boundary inside a syllable of {text!r}: {ids}")


def test_a_window_cut_inside_a_syllable_drops_only_that_syllable(
    token_text: TokenText, faster_whisper_tokenizer: FasterWhisperTokenizer
) -> None:
    # faster-whisper's own decode of this real cut sequence: the "�" users saw
    assert faster_whisper_tokenizer.decode(CUT_WINDOW).endswith(" 파스\ufffd")

    decoded = token_text.segment_texts([(0, CUT_WINDOW)])
    assert decoded.texts == [" 저는 파이콘과 파이터 시리용 파스"]
    assert decoded.dropped_bytes == 2  # ED 83: two of the three bytes of "타"

    whole = token_text.segment_texts([(0, CUT_WINDOW + CUT_WINDOW_REST)])
    assert whole.texts == [" 저는 파이콘과 파이터 시리용 파스타딩"]
    assert whole.dropped_bytes == 0
    assert whole.texts[0] == faster_whisper_tokenizer.decode(CUT_WINDOW + CUT_WINDOW_REST)


def test_a_segment_boundary_inside_a_syllable_writes_it_whole_in_the_next_segment(
    hf_tokenizer: tokenizers.Tokenizer,
    token_text: TokenText,
    faster_whisper_tokenizer: FasterWhisperTokenizer,
) -> None:
    ids, cut = _split_syllable(hf_tokenizer, token_text, " 뷁 똠방각하 쀍 햏")
    # Whisper's timestamp pair in the middle of the syllable, as faster-whisper slices it
    stamp = faster_whisper_tokenizer.timestamp_begin + 40
    first, second = [*ids[:cut], stamp], [stamp, *ids[cut:]]
    assert "\ufffd" in faster_whisper_tokenizer.decode(first)
    assert "\ufffd" in faster_whisper_tokenizer.decode(second)

    decoded = token_text.segment_texts([(0, first), (0, second)])
    assert "".join(decoded.texts) == " 뷁 똠방각하 쀍 햏"
    assert all("\ufffd" not in t for t in decoded.texts)
    assert decoded.dropped_bytes == 0


def test_a_new_window_never_completes_the_last_ones_syllable(
    hf_tokenizer: tokenizers.Tokenizer, token_text: TokenText
) -> None:
    ids, cut = _split_syllable(hf_tokenizer, token_text, " 쀍 햏")
    # A fresh decode starts with whole characters; bytes that would only continue the
    # previous window's cut syllable are no text of their own.
    decoded = token_text.segment_texts([(0, ids[:cut]), (3000, ids[cut:])])
    assert all("\ufffd" not in t for t in decoded.texts)
    assert decoded.texts[0] == token_text.text_bytes(ids[:cut]).decode("utf-8", "ignore")
    assert decoded.dropped_bytes > 0
    assert "햏" in decoded.texts[1]


def test_bytes_that_are_no_utf8_are_dropped_not_shown(token_text: TokenText) -> None:
    lead = next(i for i in range(token_text.first_special) if token_text.token_bytes(i) == b"\xed")
    text = next(i for i in range(token_text.first_special) if token_text.token_bytes(i) == b" a")
    decoded = token_text.segment_texts([(0, [text, lead, text])])
    assert decoded.texts == [" a a"]
    assert decoded.dropped_bytes == 1


def test_token_bytes_agree_with_the_tokenizer_on_the_whole_vocabulary(
    hf_tokenizer: tokenizers.Tokenizer, token_text: TokenText
) -> None:
    checked = 0
    for token_id in range(token_text.first_special):
        data = token_text.token_bytes(token_id)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue  # a partial character: the tokenizer itself can only write "�"
        assert text == hf_tokenizer.decode([token_id]), token_id
        checked += 1
    assert checked > 40_000
    assert token_text.token_bytes(token_text.first_special) == b""  # <|endoftext|>
    assert token_text.token_bytes(50364) == b""  # the <|0.00|> timestamp


def test_words_lose_the_partial_syllable_faster_whisper_marks(
    faster_whisper_tokenizer: FasterWhisperTokenizer,
) -> None:
    # faster-whisper's word split of the cut window (on spaces, within characters)
    words, _ = faster_whisper_tokenizer.split_to_word_tokens(CUT_WINDOW[1:])
    assert words[-1] == " 파스\ufffd", words
    assert without_partial_characters(words[-1]) == " 파스"
    assert [without_partial_characters(w) for w in words[:-1]] == words[:-1]
