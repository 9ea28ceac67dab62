"""JSON validity, JSON-Schema conformance and tool-call agreement."""

from __future__ import annotations

from pathlib import Path

import pytest

from shadoweval.config.base import ConfigError
from shadoweval.score.scorers.structured import read_json
from tests.score_helpers import build, by_side, one, pair_record, run

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("text", "status", "document"),
    [
        ('{"a": 1}', "valid", {"a": 1}),
        ("  [1, 2]\n", "valid", [1, 2]),
        ('```json\n{"a": 1}\n```', "fenced", {"a": 1}),
        ('{"a": 1}\n\nI hope this helps!', "embedded", {"a": 1}),
        ('Here you go: {"a": {"b": [1, 2]}} Let me know.', "embedded", {"a": {"b": [1, 2]}}),
        ('Sure {see below}: {"x": 2}', "embedded", {"x": 2}),  # the first brace is prose
        ('{"a": [1, 2', "truncated", None),
        ('{"a": "unfinished', "truncated", None),
        ("{'a': 1}", "invalid", None),  # Python, not JSON
        ('{"a": 1,}', "invalid", None),  # trailing comma
        ("no json here", "invalid", None),
        ("42", "scalar", 42),
        ("", "empty", None),
        ("NaN", "invalid", None),
    ],
)
def test_read_json(text: str, status: str, document: object) -> None:
    r = read_json(text)
    assert r.status == status, r.explanation
    assert r.document == document


def test_trailing_text_is_explained() -> None:
    r = read_json('{"name": "Ada"}\n\nI hope this helps!')
    assert r.explanation == (
        "JSON object with 1 key followed by 18 characters ('I hope this helps!'); "
        "a strict parser rejects the answer as a whole"
    )


def test_json_valid_scores_each_side() -> None:
    rec = pair_record('{"name": "Ada", "age": 36}', '{"name": "Ada", "age": 36}\nDone!')
    scores = by_side(run(build("json_valid"), rec))
    assert scores["primary"].value == 1.0 and scores["primary"].label == "valid"
    assert scores["candidate"].value == 0.5 and scores["candidate"].label == "embedded"
    assert scores["candidate"].passed is False
    strict = by_side(run(build("json_valid", lenient_value=0.0), rec))
    assert strict["candidate"].value == 0.0
    assert (
        by_side(run(build("json_valid", allow_scalars=True), pair_record("42", "x")))[
            "primary"
        ].value
        == 1.0
    )


def test_json_valid_notes_a_token_limit_cut() -> None:
    rec = pair_record('{"a": 1}', '{"a": [1, 2, 3', candidate_finish="length")
    s = by_side(run(build("json_valid"), rec))["candidate"]
    assert s.label == "truncated" and s.value == 0.0
    assert "finish_reason length" in s.explanation


def _structured_request(schema: dict[str, object]) -> dict[str, object]:
    return {
        "model": "m",
        "messages": [{"role": "user", "content": "Extract the person."}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "p", "schema": schema, "strict": True},
        },
    }


def test_json_schema_from_the_request() -> None:
    rec = pair_record(
        '{"name": "Ada", "age": 36}',
        '{"name": "Ada", "age": -1, "x": 1}',
        request=_structured_request(SCHEMA),
    )
    scores = by_side(run(build("json_schema"), rec))
    assert scores["primary"].value == 1.0 and scores["primary"].label == "conforms"
    cand = scores["candidate"]
    assert cand.value == 0.0 and cand.label == "violates"
    assert cand.details is not None and cand.details["error_count"] == 2
    assert any(e.startswith("$.age:") for e in cand.details["errors"])
    assert "request's response_format schema" in cand.explanation


def test_json_schema_responses_api_format_and_fenced_documents() -> None:
    request = {
        "model": "m",
        "input": "x",
        "text": {"format": {"type": "json_schema", "name": "p", "schema": SCHEMA}},
    }
    rec = pair_record('```json\n{"name": "Ada", "age": 1}\n```', "not json", request=request)
    scores = by_side(run(build("json_schema"), rec))
    assert scores["primary"].value == 1.0  # lenient: the fenced document is validated
    assert "document extracted: fenced" in scores["primary"].explanation
    assert scores["candidate"].label == "no_json"
    strict = by_side(run(build("json_schema", lenient=False), rec))
    assert strict["primary"].value == 0.0


def test_json_schema_does_not_apply_without_a_schema() -> None:
    assert run(build("json_schema"), pair_record('{"a": 1}', '{"a": 1}')) == []


def test_json_schema_from_options_and_file(tmp_path: Path) -> None:
    path = tmp_path / "person.yaml"
    path.write_text("type: object\nrequired: [name]\n")
    rec = pair_record('{"name": "x"}', '{"nom": "x"}')
    for scorer in (
        build("json_schema", schema={"type": "object", "required": ["name"]}),
        build("json_schema", schema_file=str(path)),
    ):
        scores = by_side(run(scorer, rec))
        assert scores["primary"].value == 1.0 and scores["candidate"].value == 0.0
        assert "configured schema" in scores["candidate"].explanation
    with pytest.raises(ConfigError, match=r"test.json_schema.options: not a valid JSON Schema"):
        build("json_schema", schema={"type": "no-such-type"})
    with pytest.raises(ConfigError, match="unexpected keyword argument 'schemas'"):
        build("json_schema", schemas={})


def call(name: str, **arguments: object) -> dict[str, object]:
    import json

    return {"id": "c", "name": name, "arguments": json.dumps(arguments)}


TOOLS_REQUEST = {
    "model": "m",
    "messages": [{"role": "user", "content": "weather?"}],
    "tools": [{"type": "function", "function": {"name": "get_weather"}}],
}


def tools(
    primary: list[dict[str, object]] | None, candidate: list[dict[str, object]] | None
) -> dict[str, object]:
    return pair_record(
        None if primary else "text",
        None if candidate else "text",
        request=TOOLS_REQUEST,
        primary_tools=primary,
        candidate_tools=candidate,
    )


def test_tool_calls_agree_regardless_of_key_order_and_number_format() -> None:
    rec = tools(
        [{"id": "a", "name": "get_weather", "arguments": '{"city": "Paris", "days": 3}'}],
        [{"id": "b", "name": "get_weather", "arguments": '{"days": 3.0, "city": "Paris"}'}],
    )
    s = one(run(build("tool_calls"), rec))
    assert (s.value, s.label, s.passed) == (1.0, "match", True)


def test_tool_calls_argument_disagreement_is_partial_credit() -> None:
    rec = tools(
        [call("get_weather", city="Paris", days=3)], [call("get_weather", city="paris", days=3)]
    )
    s = one(run(build("tool_calls"), rec))
    # 0.5 for the name + 0.5 x (1 of 2 keys equal)
    assert s.value == pytest.approx(0.75) and s.label == "args_mismatch"
    assert "city" in s.explanation
    assert one(run(build("tool_calls", fold_strings=True), rec)).value == 1.0
    # true is not 1
    rec = tools([call("f", flag=True)], [call("f", flag=1)])
    assert one(run(build("tool_calls"), rec)).value == pytest.approx(0.5)


def test_tool_calls_names_counts_and_invalid_arguments() -> None:
    s = one(
        run(
            build("tool_calls"),
            tools([call("get_weather", city="Paris")], [call("get_time", city="Paris")]),
        )
    )
    assert (s.value, s.label) == (0.0, "name_mismatch")
    s = one(run(build("tool_calls"), tools([call("a"), call("b")], [call("b")])))
    assert s.value == pytest.approx(0.5) and s.label == "count_mismatch"  # b matched, a missing
    # Parallel calls in another order still match.
    s = one(
        run(
            build("tool_calls"),
            tools([call("a", x=1), call("b", y=2)], [call("b", y=2), call("a", x=1)]),
        )
    )
    assert s.value == 1.0
    bad = [{"id": "c", "name": "get_weather", "arguments": '{"city": "Par'}]
    s = one(run(build("tool_calls"), tools([call("get_weather", city="Paris")], bad)))
    assert (s.value, s.label) == (0.5, "invalid_arguments")


def test_tool_calls_missing_extra_and_not_applicable() -> None:
    s = one(run(build("tool_calls"), tools([call("get_weather")], None)))
    assert (s.value, s.label) == (0.0, "missing_call")
    s = one(run(build("tool_calls"), tools(None, [call("get_weather")])))
    assert (s.value, s.label) == (0.0, "extra_call")
    s = one(run(build("tool_calls"), tools(None, None)))
    assert (s.value, s.label) == (1.0, "no_calls")  # tools offered, both answered in text
    assert run(build("tool_calls"), pair_record("a", "b")) == []  # no tools anywhere
