import pytest

from shadoweval.config import CustomRedaction, Redaction
from shadoweval.redaction import Redactor

R = Redactor(Redaction())


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("mail me at jane.doe+x@example.co.uk today", "email"),
        ("call +44 20 7946 0958 now", "phone"),
        ("call (555) 123-4567 now", "phone"),
        ("card 4111 1111 1111 1111 ok", "credit_card"),
        ("card 4111-1111-1111-1111 ok", "credit_card"),
        ("Authorization: Bearer abc.def-ghi_jkl123", "bearer_token"),
        ("key sk-proj-abcdefghijklmnop1234", "api_key"),
        ("aws AKIAABCDEFGHIJKLMNOP", "api_key"),
        ("gh ghp_abcdefghijklmnopqrstuvwxyz0123456789", "api_key"),
    ],
)
def test_builtin_rules(text: str, kind: str) -> None:
    out = R.text(text)
    assert f"[REDACTED:{kind}]" in out


def test_non_luhn_digit_runs_stay() -> None:
    assert R.text("order 1234 5678 9012 3456") == "order 1234 5678 9012 3456"


def test_custom_rule_and_json_walk() -> None:
    red = Redactor(Redaction(builtin=[], custom=[CustomRedaction(name="emp", pattern=r"EMP-\d+")]))
    body = {"messages": [{"role": "user", "content": "id EMP-1234"}], "n": 1, "EMP-9": "k"}
    out = red.json(body)
    assert out["messages"][0]["content"] == "id [REDACTED:emp]"
    assert out["EMP-9"] == "k" and out["n"] == 1
    assert body["messages"][0]["content"] == "id EMP-1234"  # input untouched


def test_disabled_redactor_is_identity() -> None:
    red = Redactor(Redaction(enabled=False))
    assert not red.active
    assert red.text("jane@example.com") == "jane@example.com"
