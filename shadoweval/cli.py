"""Command line: ``shadoweval serve | check-config | demo | fake-upstream | kafka init``."""

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
