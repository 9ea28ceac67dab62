import re

import pytest

from shadoweval.config import CustomRedaction, Redaction
from shadoweval.redaction import _BUILTIN, _MAY_MATCH, Redactor, _digits, _may_match_any

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


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("x jo@x.io", "email"),
        ("é 4111 1111 1111 1111", "credit_card"),
        ("378282246310005", "credit_card"),
        ("3056 930902 5904", "credit_card"),
        ("+1 555 123 4567", "phone"),
        ("(555)123-4567", "phone"),
        ("555.123.4567", "phone"),
        ("555 123 4567", "phone"),
        ("bearer abcdefgh", "bearer_token"),
        ("xoxb-1234567890", "api_key"),
        ("AIza" + "b" * 35, "api_key"),
        ("eyJabcdefghij.abcdefghij.abcdefghij", "api_key"),
        ("1.2.3.4", "ipv4"),
        ("at 255.255.255.255 now", "ipv4"),
    ],
)
def test_cheap_checks_never_skip_a_match(text: str, kind: str) -> None:
    # The checks only let a rule's regex be skipped: each must hold wherever it matches.
    assert re.search(_BUILTIN[kind], text)
    digits = _digits(text)
    assert _MAY_MATCH[kind](text, digits)
    assert _may_match_any(text, digits)


def test_digit_count_is_ascii_only() -> None:
    # Fullwidth and Arabic-Indic digits are not counted; lone surrogates do not raise.
    assert _digits("\uff11\uff123\ud8004 \u0663x9") == 3
