"""The room page speaks the data channel's typed contract (stream/contract.py), through the
JSON Schema generated from it and checked in beside room.js: the file is what the structs
generate, room.js handles every message type the gateway sends and sends only requests the
gateway decodes, and neither side has a type the other lacks."""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import get_args

import msgspec
import pytest

from stream import contract

STATIC = resources.files("stream").joinpath("static")
ROOM_JS = STATIC.joinpath("room.js").read_text(encoding="utf-8")
SCHEMA_TEXT = (
    resources.files("stream").joinpath(*contract.PROTOCOL_SCHEMA_FILE).read_text(encoding="utf-8")
)
SCHEMA = json.loads(SCHEMA_TEXT)


def _tags(union) -> dict[str, type]:
    return {t.__struct_config__.tag: t for t in get_args(union)}


def _schema_types(direction: str) -> dict[str, dict]:
    """The checked-in schema's message types one way: ``type`` tag → its definition."""
    union = SCHEMA["$defs"][direction]
    assert union["discriminator"]["propertyName"] == "type"
    return {
        tag: SCHEMA["$defs"][ref.rpartition("/")[2]]
        for tag, ref in union["discriminator"]["mapping"].items()
    }


def _sent_by_page() -> dict[str, set[str]]:
    """Every ``send({ type: …, fields })`` in room.js: type → its field names (a type held
    in a variable is resolved through the ``choose("…", card)`` calls that pass it)."""
    sent = re.findall(r"send\(\{ type: (\w+|\"\w+\")([^}]*)\}\)", ROOM_JS)
    assert sent, "no send({ type: … }) calls found in room.js"
    chosen = re.findall(r'choose\("(\w+)"', ROOM_JS)
    out: dict[str, set[str]] = {}
    for kind, rest in sent:
        fields = {"type", *re.findall(r"(\w+):", rest)}
        for name in [kind.strip('"')] if kind.startswith('"') else chosen:
            out[name] = fields
    return out


def test_the_checked_in_schema_is_what_the_structs_generate():
    assert SCHEMA_TEXT == contract.data_channel_schema_text(), (
        "stream/static/protocol.schema.json is stale: run `intervue protocol-schema`"
    )


def test_the_schema_states_the_version_and_limits_declared_in_the_contract():
    assert SCHEMA["x-protocol-version"] == contract.ROOM_PROTOCOL_VERSION
    assert SCHEMA["x-limits"] == {"max_request_bytes": contract.MAX_ROOM_REQUEST_BYTES}
    page_version = re.search(r"const PROTOCOL_VERSION = (\d+);", ROOM_JS)
    assert page_version and int(page_version.group(1)) == contract.ROOM_PROTOCOL_VERSION


def test_the_schema_covers_every_struct_both_ways():
    assert set(_schema_types("PageMessage")) == set(_tags(contract.PageMessage))
    assert set(_schema_types("RoomRequest")) == set(_tags(contract.RoomRequest))


def test_the_page_handles_every_message_the_schema_has_and_no_other():
    handled = set(re.findall(r'case "([a-z_]+)":', ROOM_JS))
    assert handled == set(_schema_types("PageMessage"))


def test_the_page_handles_every_interview_step_the_schema_has_and_no_other():
    handled = set(re.findall(r'msg\.step === "([a-z_]+)"', ROOM_JS))
    update = SCHEMA["$defs"]["InterviewUpdate"]
    assert handled == set(update["properties"]["step"]["enum"]) == set(contract.STEP_TYPES)


def test_the_page_knows_the_rubrics_row_order():
    from llm.schemas import CRITERIA

    listed = re.search(r"const CRITERIA = (\[[^\]]*\]);", ROOM_JS)
    assert listed and json.loads(listed.group(1)) == [field for field, _, _ in CRITERIA]


def test_the_page_sends_only_requests_in_the_schema_with_their_fields():
    requests = _schema_types("RoomRequest")
    sent = _sent_by_page()
    for name, fields in sent.items():
        assert name in requests, f"room.js sends {name!r}, which the schema lacks"
        definition = requests[name]
        assert fields <= set(definition["properties"]), (name, fields)
        assert set(definition.get("required", [])) <= fields, (name, fields)
    assert set(sent) == set(requests) - {"ping"}  # the page does not ping


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


def test_a_hello_of_another_protocol_version_is_refused():
    hello = contract.Hello(session="s1", analysis_fps=10.0)
    assert contract.decode_page(contract.encode_page(hello)).v == contract.ROOM_PROTOCOL_VERSION
    stale = contract.Hello(v=contract.ROOM_PROTOCOL_VERSION + 1, session="s1", analysis_fps=1.0)
    with pytest.raises(contract.ContractError, match="protocol version"):
        contract.decode_page(contract.encode_page(stale))


def test_a_turn_update_round_trips_with_its_type_tag():
    update = contract.TurnUpdate(
        question=1, attempt=2, state="answering", elapsed_ms=1000, cap_left_ms=5000
    )
    assert contract.decode_page(contract.encode_page(update)) == update
    assert msgspec.json.decode(contract.encode_page(update))["type"] == "turn"


def test_the_cli_writes_the_schema_and_checks_it(tmp_path):
    from tests._cli import run_cli

    path = tmp_path / "protocol.schema.json"
    written = run_cli({}, "protocol-schema", "--output", str(path))
    assert written.returncode == 0, written.stderr
    assert path.read_text(encoding="utf-8") == SCHEMA_TEXT
    assert run_cli({}, "protocol-schema", "--check", "--output", str(path)).returncode == 0
    path.write_text("{}\n", encoding="utf-8")
    stale = run_cli({}, "protocol-schema", "--check", "--output", str(path))
    assert stale.returncode == 1 and "out of date" in stale.stderr


def test_every_interview_step_as_sent_validates_against_the_schema_and_a_mismatch_does_not():
    """The schema types `InterviewUpdate.data` by its `step`: each step's example, sent the
    way the gateway sends it, validates; one step's data under another step's name does not."""
    from jsonschema import Draft202012Validator

    from tests.test_contract import STEP_EXAMPLES

    validator = Draft202012Validator(SCHEMA)
    names = {kind: step for step, kind in contract.STEP_TYPES.items()}
    for data in STEP_EXAMPLES:
        step = names[type(data)]
        wire = json.loads(
            contract.encode_page(contract.InterviewUpdate(step=step, data=data, at_ms=1.0))
        )
        errors = list(validator.iter_errors(wire))
        assert not errors, (step, [e.message for e in errors])
    # (structs accept unknown fields, so the mismatch shows as a missing required one)
    error = json.loads(
        contract.encode_page(
            contract.InterviewUpdate(step="error", data=STEP_EXAMPLES[-1], at_ms=1.0)
        )
    )
    error["step"] = "asked"
    assert list(validator.iter_errors(error)), "an error step's data passed as an asked step"
