"""Exact, normalised and lexical scorers: hand-checked cases, references, edge cases."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadoweval.score.scorers.lexical import chrf_score, lcs_length
from shadoweval.score.text import canonical_number, tokens
from tests.score_helpers import build, by_side, one, pair_record, run


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The total is $1,000.00!", ["the", "total", "is", "1000"]),
        ("1000.0", ["1000"]),
        ("1e3 +1000", ["1000", "1000"]),
        ("-0.50 and \u22125", ["-0.5", "and", "-5"]),
        ("50% vs 50", ["50", "%", "vs", "50"]),  # a percentage is not the number
        ("version 1.2.3", ["version", "1", "2", "3"]),  # not a decimal number
        ("1,5", ["1", "5"]),  # not a thousands separator
        ("Caf\u00e9  \uff21\uff22\uff23\n\tend.", ["café", "abc", "end"]),  # NFKC + whitespace
    ],
)
def test_tokens_normalise_case_space_punctuation_numbers(text: str, expected: list[str]) -> None:
    assert tokens(text) == expected


def test_canonical_number() -> None:
    assert {canonical_number(x) for x in ("1,000", "1000", "1000.0", "1000.000", "1e3")} == {"1000"}
    assert canonical_number("0.50") == "0.5"
    assert canonical_number("-0.0") == "0"
    # A hex id like "12e45678" parses as a number; it must not expand to 45,679 digits.
    assert canonical_number("12e45678") == "12e45678"
    assert tokens("perhaps 12E45678.") == ["perhaps", "12e45678"]
    assert canonical_number("1e999999999999") == "1e999999999999"
    assert canonical_number("9" * 60) != canonical_number("9" * 59 + "8")


def test_exact_match_and_first_difference() -> None:
    scorer = build("exact")
    assert one(run(scorer, pair_record("Paris", "Paris"))).value == 1.0
    s = one(run(scorer, pair_record("The answer is 42.", "The answer is 43.")))
    assert s.value == 0.0 and s.passed is False
    assert s.details == {"first_difference": 15, "chars": 17, "reference_chars": 17}
    assert "character 15" in s.explanation
    # Whitespace matters unless strip is set.
    assert one(run(scorer, pair_record("Paris", "Paris\n"))).value == 0.0
    assert one(run(build("exact", strip=True), pair_record("Paris", " Paris\n"))).value == 1.0


@pytest.mark.parametrize(
    ("primary", "candidate", "value"),
    [
        ("The total is 1000.", "the total is 1,000", 1.0),
        ("Total: 1000.0 USD", "total 1000 usd", 1.0),
        ("Hello,   World!", "hello world", 1.0),
        ("PARIS", "Paris.", 1.0),
        ("1000", "10000", 0.0),
        ("50%", "50", 0.0),
        ("It is 3.14", "It is 3.15", 0.0),
    ],
)
def test_normalized_match(primary: str, candidate: str, value: float) -> None:
    s = one(run(build("normalized"), pair_record(primary, candidate)))
    assert s.value == value
    assert s.side == "pair"


def test_normalized_articles_only_when_asked() -> None:
    rec = pair_record("The capital is Paris", "capital is Paris")
    assert one(run(build("normalized"), rec)).value == 0.0
    assert one(run(build("normalized", drop_articles=True), rec)).value == 1.0


def test_errored_side_is_unscored_not_zero() -> None:
    for name in ("exact", "normalized", "token_f1", "rouge_l", "chrf"):
        s = one(run(build(name), pair_record("Paris", None, candidate_error="http_5xx")))
        assert s.value is None and s.label == "unscored", name
        assert "candidate answered with an error (http_5xx)" in s.explanation


def test_expected_answer_scores_each_side_against_it() -> None:
    rec = pair_record("It is 1,000.", "1000", expected="1000")
    scores = by_side(run(build("normalized"), rec))
    assert set(scores) == {"primary", "candidate"}
    assert scores["primary"].value == 0.0  # "it is 1000" != "1000"
    assert scores["candidate"].value == 1.0
    assert "expected answer" in scores["candidate"].explanation
    # A failed candidate only loses its own side.
    rec = pair_record("1000", None, expected="1000", candidate_error="timeout")
    scores = by_side(run(build("exact"), rec))
    assert scores["primary"].value == 1.0 and scores["candidate"].value is None


def test_token_f1_hand_checked() -> None:
    # candidate tokens: cat sat on mat (articles dropped); primary: cat sat on red mat
    s = one(run(build("token_f1"), pair_record("The cat sat on the red mat", "A cat sat on a mat")))
    precision, recall = 4 / 4, 4 / 5
    assert s.value == pytest.approx(2 * precision * recall / (precision + recall))
    assert one(run(build("token_f1"), pair_record("", ""))).value == 1.0
    assert one(run(build("token_f1"), pair_record("Paris", ""))).value == 0.0
    assert one(run(build("token_f1"), pair_record("1,000 apples", "1000 apples"))).value == 1.0


def test_rouge_l_hand_checked() -> None:
    # LCS of "police killed the gunman" / "police kill the gunman" = police, the, gunman (3)
    s = one(
        run(build("rouge_l"), pair_record("police killed the gunman", "police kill the gunman"))
    )
    assert s.details == {"lcs": 3}
    assert s.value == pytest.approx(0.75)
    # Order matters for ROUGE-L, not for token F1.
    rec = pair_record("a b c d", "d c b a")
    assert one(run(build("rouge_l"), rec)).value == pytest.approx(0.25)
    assert one(run(build("token_f1", drop_articles=False), rec)).value == 1.0


def _lcs_dp(a: list[str], b: list[str]) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        prev = 0
        for j, y in enumerate(b, 1):
            cur = row[j]
            row[j] = prev + 1 if x == y else max(row[j], row[j - 1])
            prev = cur
    return row[-1]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from("abcde"), max_size=80),
    st.lists(st.sampled_from("abcdef"), max_size=80),
)
def test_bit_parallel_lcs_equals_dynamic_programming(a: list[str], b: list[str]) -> None:
    assert lcs_length(a, b) == _lcs_dp(a, b)


def test_chrf() -> None:
    assert chrf_score("the cat", "the cat") == pytest.approx(1.0)
    assert chrf_score("abc", "xyz") == pytest.approx(0.0, abs=1e-9)
    # Morphological variants keep most character n-grams, unlike exact token overlap.
    close = chrf_score("the cats are running", "the cat is running")
    far = chrf_score("a dog sleeps", "the cat is running")
    assert 0.4 < close < 1.0 and far < 0.2
    # Whitespace is ignored.
    assert chrf_score("thecat", "the cat") == pytest.approx(1.0)
    s = one(run(build("chrf"), pair_record("the cat is running", "the cats are running")))
    assert s.value == pytest.approx(chrf_score("the cats are running", "the cat is running"))
    with pytest.raises(Exception, match="order must be"):
        build("chrf", order=0)
