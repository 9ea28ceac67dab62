"""The review config: the example file, environment overrides, errors, the access token."""

from __future__ import annotations

from pathlib import Path

import pytest

from shadoweval.config.base import ConfigError
from shadoweval.config.review import ReviewAuth, ReviewConfig, load_review
from shadoweval.review.command import resolve_token

EXAMPLE = Path(__file__).parents[2] / "config" / "review.yaml"


def test_the_example_file_lists_the_defaults() -> None:
    assert load_review(EXAMPLE, environ={}) == ReviewConfig()


def test_environment_overrides_and_errors(tmp_path: Path) -> None:
    cfg = load_review(
        EXAMPLE,
        environ={
            "SHADOWEVAL_REVIEW_LISTEN__PORT": "9000",
            "SHADOWEVAL_REVIEW_REVIEW__COMPARISONS": "[primary, candidates]",
            "SHADOWEVAL_REVIEW_TOKEN": "not a config key",
        },
    )
    assert cfg.listen.port == 9000
    assert cfg.review.comparisons == ["primary", "candidates"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("review: {ratings_per_item: 0, rubrik: []}\nsink: {path: s.jsonl}\n")
    with pytest.raises(ConfigError) as err:
        load_review(bad, environ={})
    assert "review.ratings_per_item" in str(err.value) and "review.rubrik: unknown key" in str(
        err.value
    )
    dup = tmp_path / "dup.yaml"
    dup.write_text("review: {rubric: [{name: a}, {name: a}]}\n")
    with pytest.raises(ConfigError, match="unique"):
        load_review(dup, environ={})


def test_the_token_comes_from_a_file_or_the_environment(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("file-token-0123456789\n")
    assert resolve_token(ReviewAuth(token_file=str(secret)), {}) == "file-token-0123456789"
    env = {"SHADOWEVAL_REVIEW_TOKEN": "env-token-0123456789"}
    assert resolve_token(ReviewAuth(), env) == "env-token-0123456789"
    with pytest.raises(ConfigError, match="at least 16 characters"):
        resolve_token(ReviewAuth(), {"SHADOWEVAL_REVIEW_TOKEN": "short"})
    with pytest.raises(ConfigError, match="SHADOWEVAL_REVIEW_TOKEN"):
        resolve_token(ReviewAuth(), {})
    with pytest.raises(ConfigError, match="cannot read"):
        resolve_token(ReviewAuth(token_file=str(tmp_path / "missing")), {})
