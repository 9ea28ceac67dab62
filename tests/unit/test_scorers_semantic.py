"""Semantic similarity: the numpy encoder against sentence-transformers' own vectors,
batching across pairs, and the OpenAI-compatible /v1/embeddings backend."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from shadoweval.config.base import ConfigError
from shadoweval.score.base import Pair
from shadoweval.score.embeddings import LocalEncoder, default_model_path
from shadoweval.testing import FakeUpstream
from tests.score_helpers import build, by_side, one, pair_record

REFERENCE = Path(__file__).parent.parent / "data" / "minilm_reference.json"


@pytest.fixture(scope="module")
def encoder() -> LocalEncoder:
    try:
        path = default_model_path()
    except ConfigError as exc:  # scripts/test.sh installs it; a bare checkout may not have it
        pytest.skip(str(exc))
    return LocalEncoder(path)


def test_numpy_encoder_matches_sentence_transformers(encoder: LocalEncoder) -> None:
    # Vectors made by sentence-transformers + torch (tests/data/make_minilm_reference.py),
    # including an empty string, Unicode and a text longer than the 256-token limit.
    ref = json.loads(REFERENCE.read_text())
    ours = encoder.encode(ref["sentences"], batch_size=3)
    theirs = np.asarray(ref["embeddings"], dtype=np.float32)
    assert ours.shape == theirs.shape == (len(ref["sentences"]), 384)
    assert np.abs(ours - theirs).max() < 1e-4
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_batching_does_not_change_vectors(encoder: LocalEncoder) -> None:
    texts = ["short", "a somewhat longer sentence about databases", "x " * 50]
    alone = np.stack([encoder.encode([t])[0] for t in texts])
    together = encoder.encode(texts, batch_size=8)
    assert np.abs(alone - together).max() < 1e-5


async def test_semantic_scorer_ranks_paraphrases_above_unrelated(encoder: LocalEncoder) -> None:
    scorer = build("semantic")
    same = one(
        await scorer.fn(
            Pair(pair_record("Paris is the capital of France.", "Paris is the capital of France."))
        )
    )
    para = one(
        await scorer.fn(
            Pair(pair_record("Paris is the capital of France.", "France's capital city is Paris."))
        )
    )
    other = one(
        await scorer.fn(
            Pair(
                pair_record(
                    "Paris is the capital of France.", "The stock market fell sharply today."
                )
            )
        )
    )
    assert same.value == pytest.approx(1.0, abs=1e-5)
    assert para.value is not None and other.value is not None
    assert para.value > 0.8 > 0.3 > other.value
    assert para.details is not None and para.details["model"] == "nreimers/MiniLM-L6-H384-uncased"
    assert "cosine similarity" in para.explanation
    empty = one(await scorer.fn(Pair(pair_record("Paris", ""))))
    assert empty.value == 0.0


async def test_semantic_batches_concurrent_pairs_and_caches_the_primary(
    encoder: LocalEncoder,
) -> None:
    scorer = build("semantic", {"semantic": {"batch_size": 64}})
    batcher = scorer.fn.batcher
    records = [
        pair_record(
            "The primary answer shared by all.", f"candidate answer number {i}", pair_id=f"r:{i}"
        )
        for i in range(20)
    ]
    results = await asyncio.gather(*(scorer.fn(Pair(r)) for r in records))
    assert len(results) == 20 and all(one(r).value is not None for r in results)
    # 21 distinct texts asked for in one loop turn: one model call.
    assert batcher.calls == 1
    await scorer.fn(Pair(records[0]))
    assert batcher.calls == 1  # both texts cached


async def test_semantic_against_an_expected_answer(encoder: LocalEncoder) -> None:
    scorer = build("semantic")
    rec = pair_record(
        "The weather is sunny.",
        "Paris is the capital of France.",
        expected="France's capital is Paris.",
    )
    scores = by_side(await scorer.fn(Pair(rec)))
    assert scores["candidate"].value is not None and scores["primary"].value is not None
    assert scores["candidate"].value > scores["primary"].value


async def test_openai_embeddings_backend_with_cost_and_retries() -> None:
    fake = FakeUpstream(model="emb", fail_first=1)  # the first call fails with a 500: retried
    await fake.start()
    try:
        cfg = {
            "semantic": {
                "backend": "openai",
                "url": fake.url,
                "model": "text-embedding-x",
                "price_per_mtok": 2.0,
                "max_retries": 2,
            }
        }
        scorer = build("semantic", cfg)
        same = one(await scorer.fn(Pair(pair_record("alpha beta", "alpha beta"))))
        diff = one(await scorer.fn(Pair(pair_record("alpha beta", "gamma delta epsilon"))))
    finally:
        await fake.stop()
    assert same.value == pytest.approx(1.0)
    assert diff.value is not None and diff.value < 0.999
    bodies = [r.body for r in fake.received if r.path == "/v1/embeddings"]
    assert bodies[-1] == {
        "model": "text-embedding-x",
        "input": ["gamma delta epsilon"],
    }  # "alpha beta" was cached
    assert len(bodies) == 3  # 1 failure + 2 calls
    # The fake counts whitespace words as tokens: 3 tokens x $2 per million.
    assert diff.cost_usd == pytest.approx(3 * 2.0 / 1e6)


def test_semantic_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="backend openai needs url and model"):
        build("semantic", {"semantic": {"backend": "openai"}})
    with pytest.raises(ConfigError, match="is not a directory"):
        build("semantic", {"semantic": {"model_path": str(tmp_path / "nope")}})
    with pytest.raises(ConfigError, match="cannot load the model"):
        build("semantic", {"semantic": {"model_path": str(tmp_path)}})
