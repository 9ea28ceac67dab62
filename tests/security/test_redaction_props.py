"""Redaction, proven on generated data: e-mail addresses, Luhn-valid card numbers, API keys
and bearer tokens, embedded in random text, never survive ``Redactor.text`` or ``.json``.

"Embedded" means separated from the surrounding text by a delimiter people and programs use
(space, line break, punctuation, quotes, ``=``/``:``); a secret glued to other letters or
digits is a different token (``abcsk-...`` is not an OpenAI key) and is out of scope.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shadoweval.config import Redaction
from shadoweval.redaction import Redactor

PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REDACTOR = Redactor(Redaction())
MARKER = re.compile(r"\[REDACTED:\w+\]")


def redact(text: str) -> str:
    """Redacted text with the markers blanked (a token may be a substring of one)."""
    return MARKER.sub(" ", REDACTOR.text(text))


SEPARATORS = [" ", "\n", "\t", ", ", "; ", "(", ")", "<", ">", '"', "'", ": ", "=", " | "]

filler = st.one_of(st.text(max_size=40), st.text(string.printable, max_size=40))
separator = st.sampled_from(SEPARATORS)


def embedded(
    secret: st.SearchStrategy[str], core: Callable[[str], str] = lambda s: s
) -> st.SearchStrategy[tuple[str, str]]:
    """(text, secret): the secret between random text, with delimiters around it. Cases
    where the random text itself contains the secret (or its digits) are discarded."""
    return (
        st.tuples(filler, separator, secret, separator, filler)
        .filter(lambda t: _bare(core(t[2])) not in _bare(t[0] + t[4]))
        .map(lambda t: ("".join(t), t[2]))
    )


def _bare(text: str) -> str:
    return "".join(c for c in text if c.isalnum())


def _luhn_complete(digits: list[int]) -> list[int]:
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:  # these are doubled once the check digit is appended
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return [*digits, (10 - total % 10) % 10]


@st.composite
def cards(draw: st.DrawFn) -> str:
    length = draw(st.integers(13, 19))
    rest = draw(st.lists(st.integers(0, 9), min_size=length - 2, max_size=length - 2))
    body = [draw(st.integers(1, 9)), *rest]
    digits = "".join(map(str, _luhn_complete(body)))
    style = draw(st.sampled_from(["plain", "space", "dash"]))
    if style == "plain":
        return digits
    sep = " " if style == "space" else "-"
    return sep.join(digits[i : i + 4] for i in range(0, len(digits), 4))


def _chars(alphabet: str, n: int, most: int | None = None) -> st.SearchStrategy[str]:
    return st.text(alphabet=alphabet, min_size=n, max_size=most or n)


ALNUM = string.ascii_letters + string.digits
api_keys = st.one_of(
    st.builds(
        lambda p, s: p + s,
        st.sampled_from(["sk-", "sk-proj-", "sk-ant-"]),
        _chars(ALNUM + "_-", 20, 60),
    ),
    _chars(string.ascii_uppercase + string.digits, 16).map(lambda s: "AKIA" + s),
    st.builds(lambda p, s: p + s, st.sampled_from(["ghp_", "gho_", "ghs_"]), _chars(ALNUM, 36)),
    _chars(ALNUM + "-", 20, 40).map(lambda s: "xoxb-" + s),
    _chars(ALNUM + "_-", 35).map(lambda s: "AIza" + s),
    st.tuples(*[_chars(ALNUM + "_-", 12, 40)] * 3).map(lambda t: "eyJ" + ".".join(t)),
)
bearer_tokens = _chars(ALNUM + "._~+/-", 8, 60).map(lambda s: "Bearer " + s)
emails = st.emails().filter(lambda e: len(e.split("@")[0]) <= 64)


@PROPS
@given(embedded(emails))
def test_emails_are_always_redacted(case: tuple[str, str]) -> None:
    text, email = case
    out = redact(text)
    assert email not in out and "@" + email.split("@")[1] not in out, out


@PROPS
@given(embedded(cards()))
def test_card_numbers_are_always_redacted(case: tuple[str, str]) -> None:
    text, card = case
    out = redact(text)
    digits = "".join(c for c in card if c.isdigit())
    assert card not in out and digits not in "".join(c for c in out if c.isdigit() or c == " "), out


@PROPS
@given(embedded(api_keys))
def test_api_keys_are_always_redacted(case: tuple[str, str]) -> None:
    text, key = case
    assert key not in redact(text)


@PROPS
@given(embedded(bearer_tokens, core=lambda s: s.split(" ", 1)[1]))
def test_bearer_tokens_are_always_redacted(case: tuple[str, str]) -> None:
    text, token = case
    assert token.split(" ", 1)[1] not in redact(text)


@PROPS
@given(st.lists(embedded(st.one_of(emails, cards(), api_keys)), min_size=1, max_size=4))
def test_secrets_anywhere_in_a_request_body_are_redacted(cases: list[tuple[str, str]]) -> None:
    body = {
        "messages": [{"role": "user", "content": [{"type": "text", "text": t} for t, _ in cases]}]
    }
    out = MARKER.sub(" ", str(REDACTOR.json(body)))
    for _, secret in cases:
        assert secret not in out


@PROPS
@given(filler)
def test_text_without_secrets_is_left_alone(text: str) -> None:
    # Nothing here can look like a secret (no @, fewer than 9 digits, no key prefixes).
    clean = "".join(c for c in text if c not in "@" and not c.isdigit())
    assert REDACTOR.text(clean + " 12345678") == clean + " 12345678"


# Linear time on adversarial repetitions of partial matches is a timing property: measured
# by benchmarks/linearity.py (results/linearity.md), not asserted here.
