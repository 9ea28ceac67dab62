"""The report's pairs as columns: dedup, order, rows and texts as the records say."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from shadoweval.report import load
from shadoweval.report.pairs import PairStore, StoreBuilder
from shadoweval.report.rows import SideValues
from shadoweval.testing.synthetic import Upstream, generate

PRIMARY = Upstream("prod", role="primary", model="prod-model")
OTHERS = [Upstream("prod-again", role="control", model="prod-model"), Upstream("cand")]


def side(upstream: str, latency: float) -> SideValues:
    return (upstream, "candidate", None, None, latency, None, 1, None, None, None, False, None)


@pytest.mark.parametrize("hash_of", [hash, lambda _: 0], ids=["hash", "every-hash-equal"])
def test_the_last_record_of_a_pair_id_stays_even_when_hashes_collide(hash_of: object) -> None:
    b = StoreBuilder(160, hash_of=hash_of)  # type: ignore[arg-type]
    primary = b.primary(None, lambda: side("prod", 0.1))
    for i, (pid, ts) in enumerate([("a", 3.0), ("b", 1.0), ("a", 2.0), ("c", 1.0), ("a", 5.0)]):
        b.add(
            pair_id=pid,
            request_id=pid,
            ts=ts,
            source="traffic",
            route="chat",
            task=None,
            primary=primary,
            candidate=side("cand", float(i)),
            cluster=None,
            probe=None,
            headers=None,
            where=("", "", ""),
        )
    store = b.build()
    assert b.duplicates == 2
    # (ts, pair_id) order; of the three "a" records the last added (ts 5.0, latency 4.0).
    assert list(store.pair_ids) == ["b", "c", "a"]
    assert store.ts.tolist() == [1.0, 1.0, 5.0]
    assert store.cand.latency.tolist() == [1.0, 3.0, 4.0]


def test_rows_read_back_from_the_file_equal_the_records(tmp_path: Path) -> None:
    pairs, _ = generate(PRIMARY, OTHERS, 6, seed=3)
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in pairs))
    ds = load([path], snippet_chars=12)
    store = ds.pairs
    assert isinstance(store, PairStore)
    by_id = {p["pair_id"]: p for p in pairs}
    for row in store:
        rec = by_id[row.pair_id]
        assert row.candidate.text == (rec["candidate"]["output_text"] or "")[:11] + (
            "\u2026" if len(rec["candidate"]["output_text"] or "") > 12 else ""
        )
        assert row.candidate.latency_s == rec["candidate"]["latency_s"]
        assert row.primary.upstream == "prod" and row.request_id == rec["request_id"]
    # The same rows kept in memory (a store made from rows) read the same.
    again = PairStore.from_rows(list(store))
    assert list(again) == list(store)
