"""The room page speaks the data channel's typed contract (stream/contract.py): it handles
every message the gateway sends and sends only requests the gateway decodes."""

from __future__ import annotations

import re
from importlib import resources
from typing import get_args

import msgspec
import pytest

from stream import contract

ROOM_JS = resources.files("stream").joinpath("static", "room.js").read_text(encoding="utf-8")


def _tags(union) -> dict[str, type]:
    return {t.__struct_config__.tag: t for t in get_args(union)}


def test_the_page_handles_every_message_the_gateway_sends():
    handled = set(re.findall(r'case "([a-z_]+)":', ROOM_JS))
    assert handled == set(_tags(contract.PageMessage))


def test_the_page_sends_only_requests_the_gateway_decodes():
    requests = _tags(contract.RoomRequest)
    sent = re.findall(r"send\(\{ type: (\w+|\"\w+\")([^}]*)\}\)", ROOM_JS)
    assert sent, "no send({ type: … }) calls found in room.js"
    kinds = set()
    for kind, rest in sent:
        fields = set(re.findall(r"(\w+):", rest))
        names = [kind.strip('"')] if kind.startswith('"') else ["next", "retry"]  # choose()
        for name in names:
            struct = requests[name]
            assert fields == set(struct.__struct_fields__), (name, fields)
            kinds.add(name)
    assert kinds == set(requests) - {"ping"}  # the page does not ping


def test_a_request_built_as_the_page_builds_it_decodes():
    examples = [
        '{"type": "done", "question": 0, "attempt": 1}',
        '{"type": "next", "question": 2, "attempt": 3}',
        '{"type": "retry", "question": 0, "attempt": 1}',
        '{"type": "bye"}',
        '{"type": "ping", "t0": 12.5}',
    ]
    decoded = [contract.decode_room_request(text) for text in examples]
    assert [type(d).__name__ for d in decoded] == [
        "DoneAnswering",
        "NextQuestion",
        "TryAgain",
        "Bye",
        "Ping",
    ]


@pytest.mark.parametrize(
    "text",
    ["[]", "null", "3", '"done"', '{"type": "done"}', '{"type": "done", "question": "x",'
     ' "attempt": 1}', '{"type": "ping", "t0": "' + "x" * 2000 + '"}', "\xff"],
)  # fmt: skip
def test_anything_else_from_a_page_is_refused_cleanly(text):
    with pytest.raises(contract.ContractError):
        contract.decode_room_request(text)


def test_every_page_message_round_trips_and_the_schema_covers_both_directions():
    schema = contract.page_message_schema()
    names = set(schema["$defs"])
    for struct in (*get_args(contract.PageMessage), *get_args(contract.RoomRequest)):
        assert struct.__name__ in names
    update = contract.TurnUpdate(
        question=1, attempt=2, state="answering", elapsed_ms=1000, cap_left_ms=5000
    )
    assert contract.decode_page(contract.encode_page(update)) == update
    assert msgspec.json.decode(contract.encode_page(update))["type"] == "turn"
