import re
from typing import Any

import pytest

from shadoweval.config.proxy import CustomRedaction, Redaction
from shadoweval.records import RequestInfo, build_pair
from shadoweval.redaction import _BUILTIN, _MAY_MATCH, Redactor, _digits, _may_match_any
from shadoweval.types import Outcome

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
        ("aws ASIAIOSFODNN7EXAMPLE", "api_key"),
        ("github_pat_11ABCDEFG0123456789abcd_efghijklmnopqrstuvwxyz0123456789ABCDEF", "api_key"),
        ("gitlab glpat-abcdefghij0123456789", "api_key"),
        ("npm npm_abcdefghijklmnopqrstuvwxyz0123456789", "api_key"),
        ("stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", "api_key"),
        ("stripe rk_live_4eC39HqLyjWDarjtT1zdp7dc", "api_key"),
        ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "cloud_secret"),
        ('"SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"', "cloud_secret"),
        (
            "AccountName=a;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErC==;",
            "cloud_secret",
        ),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "basic_auth"),
        ("db password=hunter2 ok", "password"),
        ('{"passwd": "correct horse"}', "password"),
        ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----", "private_key"),
        (
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1r\n-----END OPENSSH PRIVATE KEY-----",
            "private_key",
        ),
        ("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI", "private_key"),
        ("iban GB82 WEST 1234 5698 7654 32 ok", "iban"),
        ("iban DE89370400440532013000", "iban"),
        ("ssn 123-45-6789", "ssn"),
        ("ni AB 12 34 56 C", "uk_nino"),
        ("ni AB123456C", "uk_nino"),
        ("card 4111.1111.1111.1111 ok", "credit_card"),
        ("call 020 7946 0958 now", "phone"),
        ("call 0044 20 7946 0958 now", "phone"),
        ("call (030) 1234567 now", "phone"),
        ("call 07700 900123 now", "phone"),
        ("write to jo [at] example [dot] com", "email_obfuscated"),
        ("write to jo(at)example.org", "email_obfuscated"),
        ("write to jo at example dot com", "email_obfuscated"),
        ("write to JO [AT] EXAMPLE [DOT] DE", "email_obfuscated"),
    ],
)
def test_builtin_rules(text: str, kind: str) -> None:
    out = R.text(text)
    assert f"[REDACTED:{kind}]" in out


def test_non_luhn_digit_runs_stay() -> None:
    assert R.text("order 1234 5678 9012 3456") == "order 1234 5678 9012 3456"


@pytest.mark.parametrize(
    "text",
    [
        "a basic understanding of the basics",  # "Basic" without base64 of user:password
        "Basic aGVsbG8gd29ybGQ=",  # base64, but "hello world" has no colon
        "iban GB82 WEST 1234 5698 7654 33",  # one digit off: fails mod-97
        "ssn 000-12-3456 and 666-12-3456 and 123-00-4567",  # never issued
        "ni QQ 12 34 56 C",  # QQ is no NINO prefix
        "card 4111.1111.1111.1112",  # fails Luhn
        "on 05-12-2024 at 09:30, version 0.12.3, pi 3.14159",
        "look at the dot product",  # spelled-out "at", no common domain
        "I work at google.com",  # a spelled-out "at" needs a spelled-out dot
        "bare 07700900123",  # bare national numbers are opt-in (phone_national)
        "the secret of the password manager",  # no = or : value
    ],
)
def test_lookalikes_stay(text: str) -> None:
    assert R.text(text) == text


def test_bare_national_phone_numbers_are_opt_in() -> None:
    red = Redactor(Redaction(builtin=["phone_national"]))
    assert red.text("call 07700900123 now") == "call [REDACTED:phone_national] now"
    assert red.text("order 1234567890123") == "order 1234567890123"


def test_keys_are_kept_values_go() -> None:
    assert R.text("password=hunter2&user=jo") == "password=[REDACTED:password]&user=jo"
    assert R.text("secret: Bearer abc123xyz ok") == "secret: [REDACTED:password] ok"
    assert R.text("AccountKey=abcdefghijklmnopqrstuvwx==;") == (
        "AccountKey=[REDACTED:cloud_secret];"
    )


def test_a_private_key_block_goes_whole() -> None:
    block = (
        "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,AB\n"
        "MIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----"
    )
    assert R.text(f"key:\n{block}\nthanks") == "key:\n[REDACTED:private_key]\nthanks"


def test_a_rejected_look_alike_does_not_hide_the_number_after_it() -> None:
    # "00 001" is no phone (too few digits), but it must not swallow the start of one.
    assert R.text("00 001 0 00 00 12 ok") == "00 [REDACTED:phone] ok"


def test_an_iban_running_into_a_word_keeps_the_word() -> None:
    assert R.text("DE89 3704 0044 0532 0130 00 THEN") == "[REDACTED:iban] THEN"


def test_custom_rule_and_json_walk() -> None:
    red = Redactor(Redaction(builtin=[], custom=[CustomRedaction(name="emp", pattern=r"EMP-\d+")]))
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": "id EMP-1234"}],
        "n": 1,
        "EMP-9": "k",
    }
    out = red.json(body)
    assert out["messages"][0]["content"] == "id [REDACTED:emp]"
    assert out["[REDACTED:emp]"] == "k" and out["n"] == 1  # object keys are caller text too
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
        ("ASIAAAAAAAAAAAAAAAAA", "api_key"),
        ("github_pat_" + "a" * 22, "api_key"),
        ("glpat-" + "a" * 20, "api_key"),
        ("npm_" + "a" * 36, "api_key"),
        ("rk_test_" + "a" * 16, "api_key"),
        ("SECRET_ACCESS_KEY:" + "a" * 20, "cloud_secret"),
        ("accountkey=" + "a" * 20, "cloud_secret"),
        ("PWD: x", "password"),
        ("Passphrase='x'", "password"),
        ("BASIC:dXNlcjpw", "basic_auth"),
        ("-----BEGIN PRIVATE KEY-----", "private_key"),
        ("GB82WEST12345698765432", "iban"),
        ("123 45 6789", "ssn"),
        ("AB123456D", "uk_nino"),
        ("4111.1111.1111.1111", "credit_card"),
        ("0044 20 7946", "phone"),
        ("(01) 2345-6789", "phone"),
        ("01 23 45 67 89", "phone"),
        ("07700900123", "phone_national"),
        ("a(AT)b.cd", "email_obfuscated"),
        ("a\tat\tb\tDOT\tcd", "email_obfuscated"),
    ],
)
def test_cheap_checks_never_skip_a_match(text: str, kind: str) -> None:
    # The checks only let a rule's regex be skipped: each must hold wherever it matches.
    assert re.search(_BUILTIN[kind], text)
    digits = _digits(text)
    assert _MAY_MATCH[kind](text, digits)
    assert _may_match_any(text, digits, text.lower())


def test_digit_count_is_ascii_only() -> None:
    # Fullwidth and Arabic-Indic digits are not counted; lone surrogates do not raise.
    assert _digits("\uff11\uff123\ud8004 \u0663x9") == 3


def test_caller_and_upstream_chosen_record_fields_are_redacted() -> None:
    info = RequestInfo(
        request_id="r1",
        received_at=0.0,
        route="chat",
        path="/v1/chat/completions",
        task="summarise for jo@example.com",
        sampling_key=None,
    )
    body = {"messages": [], "metadata": {"jo@example.com": "x"}}

    def side(upstream: str, model: str) -> Outcome:
        return Outcome(upstream=upstream, role="candidate", status=200, latency_s=0.1,
                       stream=False, model=model)  # fmt: skip

    record = build_pair(info, body, side("prod", "gpt-4o"), side("cand", "x sk-" + "a" * 20), R)
    assert record["task"] == "summarise for [REDACTED:email]"
    assert record["request"]["metadata"] == {"[REDACTED:email]": "x"}
    assert record["primary"]["model"] == "gpt-4o"
    assert record["candidate"]["model"] == "x [REDACTED:api_key]"
