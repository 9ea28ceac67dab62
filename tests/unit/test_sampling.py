import random

from shadoweval.config.proxy import Sampling
from shadoweval.sampling import Sampler, TokenBucket


def test_keyed_decisions_are_stable_across_instances() -> None:
    a = Sampler(Sampling(rate=0.3, key="header:x-user-id"))
    b = Sampler(Sampling(rate=0.3, key="header:x-user-id"), rng=random.Random(99))
    keys = [a.key({"x-user-id": f"user-{i}"}, b"") for i in range(2000)]
    first = [a.mirrored(k) for k in keys]
    assert first == [b.mirrored(k) for k in keys]
    assert 0.25 < sum(first) / len(first) < 0.35


def test_body_key_same_body_same_decision() -> None:
    s = Sampler(Sampling(rate=0.5, key="body"))
    decisions = {s.mirrored(s.key({}, b'{"q": %d}' % i)) for i in range(50) for _ in range(3)}
    assert decisions == {True, False}
    for i in range(50):
        key = s.key({}, b'{"q": %d}' % i)
        assert len({s.mirrored(key) for _ in range(5)}) == 1


def test_salt_changes_the_subset() -> None:
    a = Sampler(Sampling(rate=0.5, key="body"))
    b = Sampler(Sampling(rate=0.5, key="body", salt="x"))
    keys = [a.key({}, str(i).encode()) for i in range(500)]
    assert [a.mirrored(k) for k in keys] != [b.mirrored(k) for k in keys]


def test_per_candidate_subsets_are_independent() -> None:
    s = Sampler(Sampling(rate=1.0, key="body"))
    keys = [s.key({}, str(i).encode()) for i in range(4000)]
    a = [s.candidate_in(k, "a", 0.5) for k in keys]
    b = [s.candidate_in(k, "b", 0.5) for k in keys]
    both = sum(x and y for x, y in zip(a, b, strict=True)) / len(keys)
    assert 0.2 < both < 0.3  # ~0.25 when independent, 0.5 when identical


def test_random_sampling_rate_and_edges() -> None:
    s = Sampler(Sampling(rate=0.1), rng=random.Random(1))
    hits = sum(s.mirrored(None) for _ in range(10000))
    assert 800 < hits < 1200
    assert not Sampler(Sampling(rate=0.0)).mirrored(None)
    assert all(Sampler(Sampling(rate=1.0)).mirrored(None) for _ in range(100))


def test_token_bucket_caps_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(5, clock=lambda: now[0])
    assert sum(bucket.take() for _ in range(100)) == 5  # one second of burst
    now[0] += 1.0
    assert sum(bucket.take() for _ in range(100)) == 5
    now[0] += 0.25
    assert sum(bucket.take() for _ in range(100)) == 1
