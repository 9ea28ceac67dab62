"""Near-duplicate inputs: word shingles, MinHash signatures, LSH banding, exact Jaccard check.

Standard library only. Each shingle is hashed once (blake2b); the signature's permutations
are cheap affine maps of that hash. Banding (``BANDS`` x ``ROWS``) finds candidate pairs
without comparing every pair of inputs; each candidate is then confirmed with the exact
Jaccard similarity of the two shingle sets, so the LSH step can only miss, never invent, a
duplicate. With 8 bands of 4 rows a pair at Jaccard 0.8 is a candidate with p = 0.985.
"""

from __future__ import annotations

import hashlib
import random
import re
import unicodedata
from collections import defaultdict
from collections.abc import Sequence

BANDS = 8
ROWS = 4
_MASK = (1 << 64) - 1
_WORD = re.compile(r"\w+")
# Fixed seeds: signatures are comparable across runs.
_rng = random.Random(0x5EED)
_PERMS = [(_rng.getrandbits(64) | 1, _rng.getrandbits(64)) for _ in range(BANDS * ROWS)]


def normalise(text: str) -> str:
    """NFKC, case folded, punctuation dropped, whitespace collapsed."""
    return " ".join(_WORD.findall(unicodedata.normalize("NFKC", text).casefold()))


def shingles(text: str, k: int) -> frozenset[int]:
    """Hashes of the k-word windows of ``text`` (one shingle when it has fewer words)."""
    words = normalise(text).split()
    if len(words) <= k:
        grams = [" ".join(words)]
    else:
        grams = [" ".join(words[i : i + k]) for i in range(len(words) - k + 1)]
    return frozenset(
        int.from_bytes(hashlib.blake2b(g.encode(), digest_size=8).digest(), "big") for g in grams
    )


def signature(shingle_set: frozenset[int]) -> tuple[int, ...]:
    return tuple(min(((a * h + b) & _MASK) for h in shingle_set) for a, b in _PERMS)


def jaccard(a: frozenset[int], b: frozenset[int]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def clusters(texts: Sequence[str], threshold: float, k: int = 3) -> list[list[int]]:
    """Indices of ``texts`` grouped into near-duplicate clusters (Jaccard >= ``threshold``,
    transitively), each cluster sorted, clusters in order of their first index."""
    sets = [shingles(t, k) for t in texts]
    parent = list(range(len(texts)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    # Identical normalised texts first: cheap, and exact whatever the threshold.
    exact: dict[frozenset[int], int] = {}
    for i, s in enumerate(sets):
        first = exact.setdefault(s, i)
        if first != i:
            parent[find(i)] = find(first)
    buckets: dict[tuple[int, tuple[int, ...]], list[int]] = defaultdict(list)
    for i in sorted(exact.values()):
        sig = signature(sets[i])
        for band in range(BANDS):
            buckets[(band, sig[band * ROWS : (band + 1) * ROWS])].append(i)
    checked: set[tuple[int, int]] = set()
    for members in buckets.values():
        for x, i in enumerate(members):
            for j in members[x + 1 :]:
                if (i, j) in checked or find(i) == find(j):
                    continue
                checked.add((i, j))
                if jaccard(sets[i], sets[j]) >= threshold:
                    parent[find(j)] = find(i)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(texts)):
        groups[find(i)].append(i)
    return sorted(groups.values(), key=lambda g: g[0])
