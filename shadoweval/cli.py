"""Command line: ``shadoweval serve | check-config | demo | fake-upstream | kafka init |
report | replay``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path

from shadoweval import __version__, loop
from shadoweval.config import ConfigError, load


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from shadoweval.server import serve

    cfg = load(args.config)
    _setup_logging(cfg.log_level)
    missing = cfg.missing_credentials()
    if missing:
        raise ConfigError("cannot start:\n  " + "\n  ".join(missing))
    loop.run(serve(cfg))
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = load(args.config)
    for warning in cfg.missing_credentials():
        print(f"warning: {warning}", file=sys.stderr)
    names = ", ".join(f"{c.name} ({c.role})" for c in cfg.candidates) or "none"
    print(
        f"{args.config}: OK — primary {cfg.primary.name} at {cfg.primary.url}; "
        f"candidates: {names}; sink: {cfg.sink.kind}"
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from shadoweval.demo import print_summary, run_demo

    _setup_logging("warning")
    result = loop.run(run_demo(args.requests, Path(args.out)))
    print_summary(result)
    return 0


def cmd_fake_upstream(args: argparse.Namespace) -> int:
    from shadoweval.testing.fake_upstream import FakeUpstream, Latency, serve_forever

    fake = FakeUpstream(
        model=args.model,
        latency=Latency.fixed(args.latency_ms / 1000),
        token_delay_s=args.token_delay_ms / 1000,
        error_rate=args.error_rate,
        record=False,
    )
    with contextlib.suppress(KeyboardInterrupt):
        loop.run(serve_forever(fake, args.host, args.port))
    return 0


def cmd_kafka_init(args: argparse.Namespace) -> int:
    from shadoweval.config import KafkaSink

    cfg = load(args.config)
    if not isinstance(cfg.sink, KafkaSink):
        raise ConfigError(f"{args.config}: sink.kind is {cfg.sink.kind!r}; kafka init needs kafka")
    from shadoweval.sinks.kafka import TopicSetupError, ensure_topics

    _setup_logging("error")  # aiokafka's connection warnings would bury the one-line answer
    try:
        lines = loop.run(ensure_topics(cfg.sink))
    except TopicSetupError as exc:
        print(f"shadoweval: kafka init: {exc}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from shadoweval.report.command import Options, run

    return run(
        Options(
            pairs=args.pairs,
            scores=args.scores or [],
            config=args.config,
            pricing=args.pricing,
            since=args.since,
            until=args.until,
            sources=tuple(args.source or ()),
            tasks=tuple(args.task or ()),
            json_out=args.json,
            html_out=args.html,
            terminal=not args.quiet,
            details=not args.summary,
            strict=args.strict,
        )
    )


def cmd_replay(args: argparse.Namespace) -> int:
    import os

    from shadoweval.replay import InputError, print_summary, progress_display, read_inputs, replay

    cfg = load(args.config)
    missing = cfg.missing_credentials()
    if missing:
        raise ConfigError("cannot replay:\n  " + "\n  ".join(missing))
    auth = None
    if args.primary_key_env:
        key = os.environ.get(args.primary_key_env)
        if not key:
            raise ConfigError(
                f"--primary-key-env: environment variable {args.primary_key_env} is not set"
            )
        auth = f"Bearer {key}"
    try:
        inputs = read_inputs(args.inputs)
    except (InputError, OSError) as exc:
        print(f"shadoweval: replay: {exc}", file=sys.stderr)
        return 2
    _setup_logging("warning")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "ab" if args.append else "wb") as fh, progress_display(len(inputs)) as progress:
        summary = loop.run(
            replay(
                cfg, inputs, fh, concurrency=args.concurrency, primary_auth=auth, progress=progress
            )
        )
    print_summary(summary)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shadoweval", description=__doc__)
    parser.add_argument("--version", action="version", version=f"shadoweval {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the shadow proxy")
    p.add_argument("--config", "-c", required=True, help="YAML config file")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("check-config", help="validate a config file and exit")
    p.add_argument("config", help="YAML config file")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("demo", help="run fake upstreams + the proxy + traffic, print a summary")
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--out", default="shadoweval-demo/pairs.jsonl", help="pairs file to write")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("fake-upstream", help="run a fake OpenAI-compatible server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9001)
    p.add_argument("--model", default="fake-model")
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--token-delay-ms", type=float, default=0.0)
    p.add_argument("--error-rate", type=float, default=0.0)
    p.set_defaults(func=cmd_fake_upstream)

    p = sub.add_parser("kafka", help="Kafka sink tools")
    kafka_sub = p.add_subparsers(dest="kafka_command", required=True)
    k = kafka_sub.add_parser(
        "init", help="create the pairs and scores topics from the config if they do not exist"
    )
    k.add_argument("--config", "-c", required=True, help="YAML config file with sink.kind: kafka")
    k.set_defaults(func=cmd_kafka_init)

    p = sub.add_parser(
        "report",
        help="compare candidates with the primary: CIs, tails, noise floor, cost, verdicts",
        description="Exit status: 0 when no candidate fails its rules, 1 when one does (or, "
        "with --strict, when one has not enough data), 2 on bad configuration or input.",
    )
    p.add_argument("pairs", nargs="+", help="pair record files (JSONL)")
    p.add_argument("--scores", "-s", nargs="+", help="score record files (JSONL)")
    p.add_argument(
        "--config", "-c", help="proxy config, or a file with report/pricing/redaction sections"
    )
    p.add_argument("--pricing", help="pricing table (default: config/pricing.yaml if present)")
    p.add_argument("--since", help="ISO 8601 time or a duration back from now (24h, 7d)")
    p.add_argument("--until", help="ISO 8601 time or a duration back from now")
    p.add_argument("--source", action="append", help="only this source (traffic, replay, probe)")
    p.add_argument("--task", action="append", help="only this task tag")
    p.add_argument("--json", metavar="PATH", help="write the report as JSON ('-' = stdout)")
    p.add_argument("--html", metavar="PATH", help="write a self-contained HTML report")
    p.add_argument("--summary", action="store_true", help="terminal: summary and verdicts only")
    p.add_argument("--quiet", "-q", action="store_true", help="no terminal output")
    p.add_argument("--strict", action="store_true", help="exit 1 when data is not enough too")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "replay", help="send an inputs file through the primary and candidates of a config"
    )
    p.add_argument("inputs", help="JSONL: request bodies, or {request, route, expected, task}")
    p.add_argument("--config", "-c", required=True, help="proxy config (primary, candidates)")
    p.add_argument("--out", "-o", default="replay-pairs.jsonl", help="pair records file")
    p.add_argument("--append", action="store_true", help="append to --out instead of replacing")
    p.add_argument("--concurrency", type=int, default=8, help="inputs in flight at once")
    p.add_argument(
        "--primary-key-env",
        help="send 'Authorization: Bearer $VAR' to the primary (and controls that forward it)",
    )
    p.set_defaults(func=cmd_replay)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"shadoweval: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
