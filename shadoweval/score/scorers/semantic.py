"""Semantic similarity: cosine of the sentence embeddings of an answer and its reference (the
primary's answer, or the expected answer when the pair carries one).

Pairs arrive one by one but are embedded in batches: every text asked for in the same event
loop turn (the runner scores a whole batch of pairs at once) goes into one model call of up
to ``semantic.batch_size`` texts, at most ``semantic.concurrency`` calls at a time. Recent
embeddings are cached, since a primary's answer is shared by the pairs of all candidates.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from shadoweval.config.base import ConfigError
from shadoweval.score.base import Pair, Score, Scorer, ScorerContext, Scores
from shadoweval.score.registry import scorer

if TYPE_CHECKING:
    from shadoweval.score.embeddings import Matrix

Encode = Callable[[list[str]], Awaitable[tuple["Matrix", float]]]


class Batcher:
    """Collects texts from concurrent callers into batched ``encode`` calls."""

    def __init__(self, encode: Encode, batch_size: int, concurrency: int, cache_size: int) -> None:
        self._encode = encode
        self._batch_size = batch_size
        self._slots = asyncio.Semaphore(concurrency)
        self._cache: OrderedDict[bytes, Any] = OrderedDict()
        self._cache_size = cache_size
        self._pending: dict[bytes, tuple[str, asyncio.Future[tuple[Any, float]]]] = {}
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.calls = 0  # encode calls made (tests, benchmarks)

    async def embed(self, texts: Sequence[str]) -> tuple[list[Any], float]:
        """One vector per text and this caller's share of the cost."""
        loop = asyncio.get_running_loop()
        waits: list[asyncio.Future[tuple[Any, float]] | Any] = []
        for text in texts:
            key = hashlib.blake2b(text.encode(), digest_size=16).digest()
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                waits.append(hit)
                continue
            pending = self._pending.get(key)
            if pending is None:
                pending = self._pending[key] = (text, loop.create_future())
            waits.append(pending[1])
        if self._pending and not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)  # after the other callers of this loop turn
        vectors: list[Any] = []
        cost = 0.0
        for item in waits:
            if isinstance(item, asyncio.Future):
                vector, share = await item
                cost += share
            else:
                vector = item  # cached: already paid for
            vectors.append(vector)
        return vectors, cost

    def _flush(self) -> None:
        self._scheduled = False
        items = list(self._pending.items())
        self._pending.clear()
        for start in range(0, len(items), self._batch_size):
            task = asyncio.ensure_future(self._run(items[start : start + self._batch_size]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(
        self, chunk: list[tuple[bytes, tuple[str, asyncio.Future[tuple[Any, float]]]]]
    ) -> None:
        async with self._slots:
            try:
                self.calls += 1
                matrix, cost = await self._encode([text for _, (text, _f) in chunk])
            except Exception as exc:
                for _, (_t, fut) in chunk:
                    if not fut.done():
                        fut.set_exception(exc)
                return
        share = cost / len(chunk)
        for row, (key, (_t, fut)) in enumerate(chunk):
            vector = matrix[row]
            if self._cache_size:
                self._cache[key] = vector
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
            if not fut.done():
                fut.set_result((vector, share))


def _encoder(ctx: ScorerContext) -> tuple[str, Encode]:
    """The configured backend, loaded now so a missing model fails at start-up."""
    from shadoweval.score import embeddings

    settings = ctx.config.semantic
    if settings.backend == "openai":
        remote = embeddings.RemoteEncoder(settings)
        ctx.closers.append(remote.close)
        return remote.name, remote.encode
    path = embeddings.default_model_path() if settings.model_path is None else None
    if settings.model_path is not None:
        from pathlib import Path

        path = Path(settings.model_path)
        if not path.is_dir():
            raise ConfigError(f"semantic.model_path: {path} is not a directory")
    assert path is not None
    local = embeddings.LocalEncoder(path, settings.max_tokens)
    batch_size = settings.batch_size

    async def encode(texts: list[str]) -> tuple[Matrix, float]:
        # numpy's matrix products release the GIL: the event loop stays responsive.
        return await asyncio.to_thread(local.encode, texts, batch_size), 0.0

    return local.name, encode


@scorer("semantic", default_rate=lambda cfg: cfg.semantic.sample_rate, family="semantic")
def semantic(ctx: ScorerContext) -> Scorer:
    """Cosine similarity of the two answers' sentence embeddings, clipped to [0, 1]
    (settings in the ``semantic`` section: backend, model, batch size, concurrency)."""
    settings = ctx.config.semantic
    model, encode = _encoder(ctx)
    batcher = Batcher(encode, settings.batch_size, settings.concurrency, settings.cache_size)

    async def score(pair: Pair) -> Scores:
        out: Scores = []
        todo = []
        for c in pair.comparisons():
            if (skip := c.unscored(pair)) is not None:
                out.append(skip)
                continue
            answer, reference = pair.text(c.answer) or "", pair.reference(c)
            if not answer.strip() or not reference.strip():
                both = not answer.strip() and not reference.strip()
                why = "both texts are empty" if both else "one of the texts is empty"
                out.append(Score(1.0 if both else 0.0, why, side=c.side))
                continue
            todo.append((c, answer, reference))
        if not todo:
            return out
        texts = [t for _, answer, reference in todo for t in (answer, reference)]
        vectors, cost = await batcher.embed(texts)
        for i, (c, _, _) in enumerate(todo):
            cosine = float(vectors[2 * i] @ vectors[2 * i + 1])
            out.append(
                Score(
                    min(1.0, max(0.0, cosine)),
                    f"cosine similarity {cosine:.3f} to {c.against} ({model} embeddings)",
                    side=c.side,
                    details={"cosine": round(cosine, 6), "model": model},
                    cost_usd=(cost / len(todo)) or None,
                )
            )
        return out

    score.batcher = batcher  # type: ignore[attr-defined]
    return score
