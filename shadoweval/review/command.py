"""``shadoweval review serve | export | publish``: the glue between the CLI and the app."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TextIO

import orjson
from aiohttp import web

from shadoweval.archive.layout import is_archive, iter_parquet
from shadoweval.config.base import ConfigError
from shadoweval.config.review import ReviewAuth, ReviewConfig
from shadoweval.redaction import Redactor
from shadoweval.review.app import create_app
from shadoweval.review.items import comparisons
from shadoweval.review.publish import Outbox
from shadoweval.review.store import Store
from shadoweval.score.sinks import build as build_sink
from shadoweval.types import Json

MIN_TOKEN_CHARS = 16


def resolve_token(auth: ReviewAuth, environ: Mapping[str, str] | None = None) -> str:
    """The access token from ``auth.token_file``, else the ``auth.token_env`` variable."""
    env = os.environ if environ is None else environ
    if auth.token_file:
        try:
            token = Path(auth.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"auth.token_file: cannot read {auth.token_file}: {exc.strerror}"
            ) from None
        where = f"auth.token_file {auth.token_file}"
    else:
        token = env.get(auth.token_env, "").strip()
        where = f"environment variable {auth.token_env}"
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(
            f"the review needs an access token of at least {MIN_TOKEN_CHARS} characters in "
            f"{where} (e.g. `openssl rand -hex 24`)"
        )
    return token


def _jsonl(paths: Iterable[str | Path], skipped: Counter[str]) -> Iterator[Json]:
    for path in paths:
        if is_archive(path):  # pairs archived as Parquet (shadoweval archive)
            yield from iter_parquet(path, "pairs")
            continue
        with open(path, "rb") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError:
                    skipped[f"invalid JSON line ({path}:{number})"] += 1
                    continue
                if isinstance(obj, dict):
                    yield obj
                else:
                    skipped["line is not a JSON object"] += 1


def import_inputs(
    store: Store, cfg: ReviewConfig, pairs: Iterable[str | Path], datasets: Iterable[str | Path]
) -> tuple[int, int, Counter[str]]:
    """Load comparisons from pair files and items from dataset files (idempotent)."""
    skipped: Counter[str] = Counter()
    redactor = Redactor(cfg.redaction)
    added = store.add_comparisons(
        comparisons(_jsonl(pairs, skipped), cfg.review, redactor, skipped)
    )
    lines = []
    for line in _jsonl(datasets, skipped):
        if isinstance(line.get("id"), str) and isinstance(line.get("request"), dict):
            lines.append(line)
        else:
            skipped["dataset line without id or request (build it with shadoweval dataset)"] += 1
    loaded = store.add_dataset(lines)
    return added, loaded, skipped


async def serve(cfg: ReviewConfig, store: Store, token: str, out: TextIO = sys.stdout) -> None:
    app = create_app(cfg, store, build_sink(cfg.sink), token)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, cfg.listen.host, cfg.listen.port)
    await site.start()
    host, port = runner.addresses[0][:2]
    print(f"review page: http://{host}:{port}/ (Ctrl-C to stop)", file=out, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()  # stops the outbox after one last publishing attempt


async def publish_pending(cfg: ReviewConfig, store: Store, everything: bool) -> int:
    """Publish what is queued (``everything``: every rated item again, e.g. to a new sink)."""
    if everything:
        store.requeue_all()
    sink = build_sink(cfg.sink)
    outbox = Outbox(store, sink, cfg.review, Redactor(cfg.redaction))
    try:
        return await outbox.drain()
    finally:
        await sink.close()


def export(store: Store, out: str | Path) -> int:
    """The dataset with reviewed expected answers, as JSONL at ``out`` ('-' = stdout)."""
    lines = [
        orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE) for line in store.export_dataset()
    ]
    if str(out) == "-":
        sys.stdout.buffer.write(b"".join(lines))
    else:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_bytes(b"".join(lines))
    return len(lines)
