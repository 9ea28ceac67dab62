"""The ``shadoweval`` command line: one subcommand per tool, each in its own module and
imported only when run (``serve`` must not pay for the report's dependencies)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from shadoweval import __version__, logs, loop
from shadoweval.config.base import ConfigError
from shadoweval.config.proxy import Config, load


def _setup_logging(level: str) -> None:
    logs.configure(level, "%(asctime)s %(levelname)s %(name)s: %(message)s")


def _readable(command: str, paths: Iterable[str], what: str = "") -> None:
    """A missing or unreadable input is one line and exit 2, checked before any work."""
    from shadoweval.archive.layout import readable

    for path in paths:
        named = f"{path} ({what})" if what else path
        if not readable(path):
            raise ConfigError(f"{command}: no such file: {named}")
        if not os.access(path, os.R_OK):
            raise ConfigError(f"{command}: cannot read {named}: permission denied")


def cmd_serve(args: argparse.Namespace) -> int:
    from shadoweval import processes

    cfg = load(args.config)
    _setup_logging(cfg.log_level)
    missing = cfg.missing_credentials() + cfg.path_problems()
    if missing:
        raise ConfigError("cannot start:\n  " + "\n  ".join(missing))
    for warning in cfg.exposure_warnings():
        logging.getLogger("shadoweval").warning("%s", warning)
    _raise_fd_limit()
    # SIGHUP reloads once the proxy is up; until then (and in the children forked now,
    # which take reloads from the proxy) it must not end the process.
    if hasattr(signal, "SIGHUP"):  # not on Windows
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    forked, relays = None, None
    if cfg.shadow_worker.enabled:
        # Before the event loop: the children share this process's pages.
        forked = processes.fork_worker()
        inherited = [forked.sock] if forked is not None else []
        relays = processes.fork_relays(cfg.listen.processes - 1, inherited)
    loop.run(processes.serve(cfg, forked, relays, args.config, args.reload_poll_s))
    return 0


def cmd_shadow_worker(args: argparse.Namespace) -> int:
    from shadoweval.processes import run_worker

    return run_worker(args.fd)


def cmd_shadow_pairing(args: argparse.Namespace) -> int:
    from shadoweval.processes import run_pairing

    return run_pairing(args.fd)


def cmd_relay(args: argparse.Namespace) -> int:
    from shadoweval.processes import run_relay

    _raise_fd_limit()
    return run_relay(args.fd)


def _poll_seconds(value: str) -> float:
    """``serve --reload-poll-s``: seconds >= 0, else argparse's one-line error (exit 2)."""
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not seconds >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be 0 (SIGHUP only) or more: {value!r}")
    return seconds


def _segment_key(value: str) -> str:
    """``report --by``: a known segment key, else argparse's one-line error (exit 2)."""
    from shadoweval.report.aggregate import check_segment

    try:
        return check_segment(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _raise_fd_limit() -> None:
    """Every in-flight request holds two sockets (caller and upstream) and each shadow one
    more: lift the soft open-files limit to the hard one, as Go's runtime does."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def cmd_check_config(args: argparse.Namespace) -> int:
    from shadoweval.proxy.loops import self_loops

    cfg = load(args.config)
    loops = self_loops(cfg)
    if loops:
        raise ConfigError("; ".join(loops))
    problems = cfg.path_problems()
    if problems:
        raise ConfigError("; ".join(problems))
    for warning in cfg.missing_credentials() + cfg.exposure_warnings() + _unpriced_budgets(cfg):
        print(f"warning: {warning}", file=sys.stderr)
    names = ", ".join(f"{c.name} ({c.role})" for c in cfg.candidates) or "none"
    probes = ""
    if cfg.probes.suites:  # the suite files are part of the configuration: check them too
        from shadoweval.probes.suite import build as build_probes

        probes = f"; probes: {len(build_probes(cfg.probes))}"
    print(
        f"{args.config}: OK — primary {cfg.primary.name} at {cfg.primary.url}; "
        f"candidates: {names}; sink: {cfg.sink.kind}{probes}"
    )
    return 0


def _unpriced_budgets(cfg: Config) -> list[str]:
    """A USD cap on a model the pricing table does not know never binds."""
    from shadoweval.pricing import PriceTable

    prices = PriceTable(cfg.pricing)
    return [
        f"candidates[{c.name}].budget.usd_per_day: model {c.model!r} has no price in the "
        "pricing table, so its answers cost nothing here and the cap never binds"
        for c in cfg.candidates
        if c.budget.usd_per_day is not None and c.model and prices.lookup(c.model) is None
    ]


def cmd_demo(args: argparse.Namespace) -> int:
    from shadoweval.demo import print_summary, run_demo, score_and_report

    _setup_logging("warning")
    if args.real_model:
        from shadoweval.demo_real import main as real_model_demo

        return real_model_demo(args.out, args.llama_url)
    out = Path(args.out)
    result = loop.run(run_demo(args.requests, out))
    print_summary(result)
    html = loop.run(score_and_report(out))
    if html is None:
        print(
            "\nTo score these pairs and see the report: pip install 'shadoweval[score,report]', "
            "then run shadoweval demo again."
        )
    else:
        print(f"\nScores: {out.with_name('scores.jsonl')}; HTML report: {html}")
    return 0


def cmd_fake_upstream(args: argparse.Namespace) -> int:
    from typing import get_args

    from shadoweval.testing.fake_upstream import FakeUpstream, Latency, Mode, serve_forever

    if args.mode not in get_args(Mode):
        raise ConfigError(f"--mode {args.mode}: one of {', '.join(get_args(Mode))}")
    fake = FakeUpstream(
        model=args.model,
        latency=Latency.fixed(args.latency_ms / 1000),
        token_delay_s=args.token_delay_ms / 1000,
        error_rate=args.error_rate,
        mode=args.mode,
        bomb_bytes=args.bomb_bytes,
        record=False,
    )
    with contextlib.suppress(KeyboardInterrupt):
        loop.run(serve_forever(fake, args.host, args.port))
    return 0


def cmd_kafka_init(args: argparse.Namespace) -> int:
    from shadoweval.config.proxy import KafkaSink

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


def cmd_score(args: argparse.Namespace) -> int:
    from shadoweval.config.scorer import FilePairSource, FileScoreSink, load_scorer

    if args.list:
        from shadoweval.console import print_table
        from shadoweval.score.registry import available

        print_table(["scorer", "from"], list(available().items()))
        return 0
    if args.evaluate_detectors:
        return _evaluate_detectors(
            args.evaluate_detectors, args.detector, args.evaluation_json, args.config
        )
    if not args.config:
        raise ConfigError("score: --config is required")
    cfg = load_scorer(args.config)
    if args.once and not isinstance(cfg.source, FilePairSource):
        raise ConfigError(f"{args.config}: --once reads a file source (source.kind: file)")
    if args.once:
        assert isinstance(cfg.source, FilePairSource)
        # Without --once a missing file is waited for; with it, "scored 0" would be a lie.
        _readable("score --once", [cfg.source.path], f"source.path in {args.config}")
    _setup_logging(cfg.log_level)
    from shadoweval.score.runner import run_scorer, summary_lines

    if args.once:
        from shadoweval.console import progress

        with progress("scored", 0, percent=True) as shown:
            runner = loop.run(run_scorer(cfg, once=True, progress=shown))
    else:
        runner = loop.run(run_scorer(cfg, once=False))
    if args.once:
        print("\n".join(summary_lines(runner.tally)))
        if isinstance(cfg.sink, FileScoreSink):
            print(f"\nscores appended to {cfg.sink.path} (position saved in {cfg.offsets_path})")
    return 0


def _evaluate_detectors(
    path: str, detector: str | None, json_out: str | None = None, config: str | None = None
) -> int:
    """Precision, recall and F1 (Wilson 95% intervals) of a detector on a labelled file,
    per language, and its misses (docs/detectors.md gives the file format); with
    ``--config``, the detector runs with that scorer config's settings."""
    from shadoweval.config.scorer import load_scorer
    from shadoweval.score.detectors.evaluate import DETECTORS, LabelledFileError, evaluate, load

    if detector not in DETECTORS:
        raise ConfigError(
            f"score --evaluate-detectors: --detector must be one of {', '.join(DETECTORS)}"
        )
    _readable("score --evaluate-detectors", [path], "the labelled file")
    try:
        items = load(Path(path))
    except LabelledFileError as exc:
        raise ConfigError(str(exc)) from None
    result = evaluate(detector, items, load_scorer(config) if config else None)
    if json_out:
        import json

        try:
            Path(json_out).write_text(json.dumps({detector: result}, indent=1) + "\n")
        except OSError as exc:
            raise ConfigError(f"score --json: cannot write {json_out}: {exc.strerror}") from None

    def rate(r: dict[str, Any]) -> str:
        if r["value"] is None:
            return "-"
        return f"{r['value']:.2f} [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}]"

    from shadoweval.console import Column, print_table

    def row(name: str, r: dict[str, Any]) -> tuple[Any, ...]:
        f1 = "-" if r["f1"] is None else f"{r['f1']:.2f}"
        cells = (rate(r["precision"]), rate(r["recall"]), f1, r["tp"], r["fp"], r["fn"], r["tn"])
        return (name, r["n"], *cells)

    columns: list[Column | str] = [
        "language",
        *(Column(c, right=True) for c in ("n", "precision [95%]", "recall [95%]", "F1")),
        *(Column(c, right=True) for c in ("tp", "fp", "fn", "tn")),
    ]
    rows = [row("all", result), *(row(lang, r) for lang, r in result["by_lang"].items())]
    print_table(columns, rows, title=f"{detector} on {path}")
    if result["misses"]:
        print()
        misses = [
            (m["kind"], m["lang"], repr(m["text"][:100]), m["explanation"])
            for m in result["misses"]
        ]
        print_table(["miss", "language", "text", "why"], misses, title="misses", indent=2)
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
            allow_empty=args.allow_empty,
            by=tuple(args.by or ()),
            detector_accuracy=args.detector_accuracy,
        )
    )


def cmd_plan(args: argparse.Namespace) -> int:
    import time

    import orjson

    from shadoweval.config.scorer import load_scorer
    from shadoweval.plan import run

    text, data = run(
        load(args.config),
        args.pairs,
        scorer=load_scorer(args.scorer_config) if args.scorer_config else None,
        recorded_rate=args.recorded_rate,
        pairs_needed=args.pairs_needed,
        sd=args.sd,
        baseline_mean=args.baseline_mean,
        now=time.time(),
    )
    if args.json:
        print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
    else:
        print(text)
    return 0


def cmd_archive(args: argparse.Namespace) -> int:
    from shadoweval.archive.command import Options, run

    return run(
        Options(
            out=args.out,
            pairs=args.pairs or [],
            scores=args.scores or [],
            kafka_config=args.kafka_config,
            bootstrap=args.bootstrap,
            start=args.start,
            end=args.end,
            memory_limit=args.memory_limit,
            quiet=args.quiet,
        )
    )


def cmd_replay(args: argparse.Namespace) -> int:
    import os

    from shadoweval.console import progress
    from shadoweval.replay import InputError, print_summary, read_inputs, replay

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
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fh = open(out, "ab" if args.append else "wb")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise ConfigError(f"replay: cannot write {out}: {exc.strerror}") from None
    with fh, progress("replayed", len(inputs)) as shown:
        summary = loop.run(
            replay(cfg, inputs, fh, concurrency=args.concurrency, primary_auth=auth, progress=shown)
        )
    print_summary(summary)
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from shadoweval.probes.command import Options, run

    _setup_logging("warning")
    return run(
        Options(
            config=args.config,
            suites=args.suite or [],
            categories=args.category or [],
            fail_on=args.fail_on or [],
            concurrency=args.concurrency,
            seed=args.seed,
            variants=not args.no_variants,
            out=args.out,
            json_out=args.json,
            quiet=args.quiet,
        )
    )


def cmd_dataset_build(args: argparse.Namespace) -> int:
    from shadoweval.config.review import load_review
    from shadoweval.dataset.build import build, print_summary, read_requests, write_items
    from shadoweval.redaction import Redactor

    cfg = load_review(args.config)
    settings = cfg.dataset
    overrides = {"edge_share": args.edge_share, "seed": args.seed, "scoring": args.scoring}
    settings = settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    records: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    if args.kafka:
        if settings.kafka is None:
            raise ConfigError("--kafka needs a dataset.kafka section in the review config")
        from shadoweval.dataset.kafka import read_pairs

        records = loop.run(read_pairs(settings.kafka, skipped, args.max_records))
    elif not args.pairs:
        raise ConfigError("dataset build needs pair record files, or --kafka")
    _readable("dataset build", [*args.pairs, *(args.scores or [])])
    from shadoweval.console import progress

    with progress("read", 0, percent=True) as shown:
        requests = read_requests(
            args.pairs, args.scores or [], settings.safety_scorers, skipped, records, shown
        )
    for reason, n in sorted(skipped.items()):
        print(f"skipped {n}: {reason}", file=sys.stderr)
    if not requests and not args.allow_empty:
        inputs = ", ".join(args.pairs) or "the Kafka topic"
        raise ConfigError(
            f"dataset build: no valid pair record in {inputs} (--allow-empty to write an empty set)"
        )
    result = build(requests, settings, Redactor(cfg.redaction), size=args.size)
    try:
        write_items(result.items, args.out)
    except OSError as exc:
        raise ConfigError(f"dataset build: cannot write {args.out}: {exc.strerror}") from None
    print_summary(result.summary, sys.stdout)
    print(f"written to {args.out}")
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    from shadoweval.config.review import load_review
    from shadoweval.review import command
    from shadoweval.review.store import Store

    cfg = load_review(args.config)
    listen = (("host", getattr(args, "host", None)), ("port", getattr(args, "port", None)))
    update = {k: v for k, v in listen if v is not None}
    if update:
        cfg = cfg.model_copy(update={"listen": cfg.listen.model_copy(update=update)})
    _setup_logging(cfg.log_level)
    token = command.resolve_token(cfg.auth) if args.review_command == "serve" else ""
    store = Store(args.db or cfg.db_path)
    try:
        if args.review_command == "serve":
            _readable("review serve", [*(args.pairs or []), *(args.dataset or [])])
            added, loaded, skipped = command.import_inputs(
                store, cfg, args.pairs or [], args.dataset or []
            )
            print(f"{added} new comparisons, {loaded} dataset items loaded into {store.path}")
            for reason, n in sorted(skipped.items()):
                print(f"  skipped {n}: {reason}")
            loop.run(command.serve(cfg, store, token))
        elif args.review_command == "export":
            n = command.export(store, args.out)
            print(f"{n} dataset items written to {args.out}", file=sys.stderr)
        else:
            sent = loop.run(command.publish_pending(cfg, store, args.all))
            print(f"{sent} human score records published to {cfg.sink.kind} sink")
    finally:
        store.close()
    return 0


class _Help(argparse.HelpFormatter):
    """Every option's default in its help line, unless the text already gives it (or there
    is none to give: no value, a flag that is off)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        default = action.default
        if (
            text is None
            or text is argparse.SUPPRESS
            or "default" in text
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)


# Started by `serve` only (the shadow worker, its pairing process, extra relay processes):
# not in --help.
HIDDEN_COMMANDS = ("shadow-worker", "shadow-pairing", "relay")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="shadoweval",
        description="Evaluate candidate LLMs on your own production traffic: a proxy that "
        "mirrors sampled requests to candidates, scorers, reports with intervals "
        "(docs/ has the guides). `shadoweval COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"shadoweval {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the shadow proxy")
    p.add_argument("--config", "-c", required=True, help="YAML config file")
    p.add_argument(
        "--reload-poll-s",
        type=_poll_seconds,
        default=2.0,
        metavar="SECONDS",
        help="check the config file for changes this often and reload it (0: only on "
        "SIGHUP; docs/reload.md)",
    )
    p.set_defaults(func=cmd_serve)

    hidden = (cmd_shadow_worker, cmd_shadow_pairing, cmd_relay)
    for name, func in zip(HIDDEN_COMMANDS, hidden, strict=True):
        p = sub.add_parser(name)  # no help: not listed
        p.add_argument("--fd", type=int, required=True, help="the channel to its parent")
        p.set_defaults(func=func)

    p = sub.add_parser("check-config", help="validate a config file and exit")
    p.add_argument("config", help="YAML config file")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("demo", help="run fake upstreams + the proxy + traffic, print a summary")
    p.add_argument("--requests", type=int, default=300, help="caller requests to send")
    p.add_argument("--out", default="shadoweval-demo/pairs.jsonl", help="pairs file to write")
    p.add_argument("--real-model", action="store_true", help="llama-server + Gemma 3 270M")
    p.add_argument("--llama-url", help="with --real-model: a running llama-server to use")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("fake-upstream", help="run a fake OpenAI-compatible server")
    p.add_argument("--host", default="127.0.0.1", help="listen address")
    p.add_argument("--port", type=int, default=9001, help="listen port")
    p.add_argument("--model", default="fake-model", help="the model name its answers carry")
    p.add_argument("--latency-ms", type=float, default=0.0, help="delay before each answer")
    p.add_argument(
        "--token-delay-ms", type=float, default=0.0, help="delay between streamed tokens"
    )
    p.add_argument(
        "--error-rate", type=float, default=0.0, help="share of requests answered with a 500"
    )
    p.add_argument(
        "--mode",
        default="normal",
        help="misbehave: hang, garbage, truncate, reset, rate_limit, error; or hostile "
        "answers of --bomb-bytes: huge_length, huge_chunked, gzip_bomb, stall",
    )
    p.add_argument("--bomb-bytes", type=int, default=1 << 30, help="size of a hostile answer")
    p.set_defaults(func=cmd_fake_upstream)

    p = sub.add_parser("kafka", help="Kafka sink tools")
    kafka_sub = p.add_subparsers(dest="kafka_command", required=True)
    k = kafka_sub.add_parser(
        "init", help="create the pairs and scores topics from the config if they do not exist"
    )
    k.add_argument("--config", "-c", required=True, help="YAML config file with sink.kind: kafka")
    k.set_defaults(func=cmd_kafka_init)

    p = sub.add_parser(
        "score",
        help="score pairs (Kafka consumer group or JSONL file) for accuracy and safety",
        description="Reads pair records, runs the configured scorers and writes "
        "shadoweval.score.v1 records; metrics on the admin port (docs/scoring.md).",
    )
    p.add_argument("--config", "-c", help="scorer config (see config/scorer.yaml)")
    p.add_argument(
        "--once", action="store_true", help="file source: score what is there, print a summary"
    )
    p.add_argument("--list", action="store_true", help="list the scorers a config can use")
    p.add_argument(
        "--evaluate-detectors",
        metavar="FILE",
        help="measure a safety detector on a labelled JSONL file (docs/detectors.md)",
    )
    p.add_argument(
        "--detector",
        help="with --evaluate-detectors: which detector (e.g. refusal; required with it)",
    )
    p.add_argument(
        "--json",
        metavar="PATH",
        dest="evaluation_json",
        help="with --evaluate-detectors: also write the figures as JSON (report "
        "--detector-accuracy reads it)",
    )
    p.set_defaults(func=cmd_score)

    p = sub.add_parser(
        "report",
        help="compare candidates with the primary: CIs, tails, noise floor, cost, verdicts",
        description="Exit status: 0 when no candidate fails its rules, 1 when one does (or, "
        "with --strict, when one has not enough data), 2 on bad configuration or input.",
    )
    p.add_argument("pairs", nargs="+", help="pair record files (JSONL) or archives (Parquet)")
    p.add_argument(
        "--scores",
        "-s",
        nargs="+",
        help="score record files (JSONL) or archives (default: the pairs archive's scores)",
    )
    p.add_argument(
        "--config", "-c", help="proxy config, or a file with report/pricing/redaction sections"
    )
    p.add_argument("--pricing", help="pricing table (default: config/pricing.yaml if present)")
    p.add_argument(
        "--since",
        help="ISO 8601 time or a duration back from now (24h, 7d) (default: the first record)",
    )
    p.add_argument(
        "--until", help="ISO 8601 time or a duration back from now (default: the last record)"
    )
    p.add_argument(
        "--source", action="append", help="only this source (traffic, replay, probe; default: all)"
    )
    p.add_argument("--task", action="append", help="only this task tag (default: all)")
    p.add_argument(
        "--by",
        action="append",
        type=_segment_key,
        metavar="SEGMENT",
        help="figures per segment too (repeatable): task, route, model, "
        "input_tokens_bucket, language, header:NAME",
    )
    p.add_argument(
        "--detector-accuracy",
        metavar="FILE",
        help="detector counts (score --evaluate-detectors --json): safety rates corrected "
        "for detector error",
    )
    p.add_argument("--json", metavar="PATH", help="write the report as JSON ('-' = stdout)")
    p.add_argument("--html", metavar="PATH", help="write a self-contained HTML report")
    p.add_argument("--summary", action="store_true", help="terminal: summary and verdicts only")
    p.add_argument("--quiet", "-q", action="store_true", help="no terminal output")
    p.add_argument("--strict", action="store_true", help="exit 1 when data is not enough too")
    p.add_argument(
        "--allow-empty",
        action="store_true",
        help="report even when the files hold no valid pair record (default: exit 2)",
    )
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "plan",
        help="expected daily spend, pairs per day and days to enough pairs, from observed traffic",
        description="Reads the primary requests of a pairs file (rate, routes, models, "
        "tokens) and prints, per candidate of --config, the shadows and USD per day its "
        "match, sample rates, budget and schedule allow, and the days to the report's "
        "pairs_needed (docs/campaigns.md). Exit status 2 on bad input.",
    )
    p.add_argument("--config", "-c", required=True, help="proxy config (candidates, pricing)")
    p.add_argument("--pairs", required=True, help="pair records (JSONL) of observed traffic")
    p.add_argument("--scorer-config", help="scorer config: adds the judge's daily spend")
    p.add_argument(
        "--recorded-rate",
        type=float,
        default=1.0,
        help="share of the traffic the pairs file holds (the sampling rate it was recorded at)",
    )
    p.add_argument(
        "--pairs-needed",
        type=int,
        help="pairs per candidate (a report's pairs_needed; default: the non-inferiority "
        "sample size at the config's rules, from --sd and --baseline-mean)",
    )
    p.add_argument("--sd", type=float, default=0.3, help="score SD assumed for pairs_needed")
    p.add_argument(
        "--baseline-mean", type=float, default=0.75, help="baseline score assumed for pairs_needed"
    )
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser(
        "archive",
        help="pairs and scores (JSONL files or a Kafka time window) into date-partitioned Parquet",
        description="Merges the records into OUT/pairs/date=YYYY-MM-DD/ and OUT/scores/...; "
        "re-archiving the same records changes nothing (docs/archive.md).",
    )
    p.add_argument("--out", "-o", required=True, help="archive directory")
    p.add_argument("--pairs", nargs="+", help="pair record files (JSONL)")
    p.add_argument("--scores", "-s", nargs="+", help="score record files (JSONL)")
    p.add_argument("--kafka-config", help="YAML: bootstrap_servers, pairs_topic, scores_topic, ...")
    p.add_argument("--bootstrap", help="Kafka bootstrap servers (host:port,...)")
    p.add_argument("--from", dest="start", help="Kafka window start: ISO 8601 or a duration (24h)")
    p.add_argument("--to", dest="end", help="Kafka window end (default: the topic's end now)")
    p.add_argument("--memory-limit", default="1GB", help="DuckDB's memory before it spills")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_archive)

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

    p = sub.add_parser(
        "probe",
        help="run the red-team probe suites once against the baseline and the candidates",
        description="Exit status: 0 when every --fail-on rule holds, 1 when one breaks, "
        "2 on bad configuration or suites.",
    )
    p.add_argument("--config", "-c", required=True, help="proxy config (primary, candidates)")
    p.add_argument(
        "--suite", action="append", help="suite file or directory (default: probes.suites)"
    )
    p.add_argument("--category", action="append", help="only this category (default: all)")
    p.add_argument(
        "--fail-on",
        action="append",
        metavar="RULE",
        help="[CATEGORY:]asr>X (a candidate's attack-success rate is above X) or "
        "[CATEGORY:]delta>X (above the baseline's by more than X); X as 0.1 or 10%%. A rule "
        "breaks only when the whole 95%% interval (clustered by base probe) lies above X",
    )
    p.add_argument("--concurrency", type=int, help="probes in flight (default: probes.concurrency)")
    p.add_argument("--seed", type=int, help="variant seed (default: probes.seed)")
    p.add_argument("--no-variants", action="store_true", help="base probes only")
    p.add_argument("--out", "-o", help="write pair records to this JSONL file, not the sink")
    p.add_argument("--json", metavar="PATH", help="write results as JSON ('-' = stdout)")
    p.add_argument("--quiet", "-q", action="store_true", help="no table or progress")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("dataset", help="eval sets from captured traffic")
    dataset_sub = p.add_subparsers(dest="dataset_command", required=True)
    d = dataset_sub.add_parser(
        "build",
        help="pick N representative inputs (stratified, deduplicated, with edge cases)",
    )
    d.add_argument("pairs", nargs="*", help="pair record files (JSONL) or archives (Parquet)")
    d.add_argument(
        "--kafka", action="store_true", help="also read the topic in the config's dataset.kafka"
    )
    d.add_argument(
        "--max-records", type=int, help="with --kafka: read at most this many (default: all)"
    )
    d.add_argument("--scores", "-s", nargs="+", help="score record files: safety flags")
    d.add_argument("--config", "-c", help="review config (dataset and redaction sections)")
    d.add_argument("--size", "-n", type=int, help="items wanted (default: dataset.size, 100)")
    d.add_argument("--edge-share", type=float, help="share of edge cases (default 0.2)")
    d.add_argument("--seed", type=int, help="random seed (default 0)")
    d.add_argument(
        "--scoring",
        choices=["exact", "rubric", "human"],
        help="default scoring rule (default: dataset.scoring, human)",
    )
    d.add_argument("--out", "-o", default="eval-set.jsonl", help="dataset file (JSONL)")
    d.add_argument(
        "--allow-empty",
        action="store_true",
        help="write an empty set when no valid pair record is found (default: exit 2)",
    )
    d.set_defaults(func=cmd_dataset_build)

    p = sub.add_parser("review", help="human rating page and expected-answer curation")
    review_sub = p.add_subparsers(dest="review_command", required=True)
    r = review_sub.add_parser("serve", help="serve the review page")
    r.add_argument("--pairs", nargs="+", help="pair record files or archives: comparisons to rate")
    r.add_argument("--dataset", nargs="+", help="dataset files: items needing an expected answer")
    r.add_argument("--host", help="listen address (default: listen.host)")
    r.add_argument("--port", type=int, help="listen port (default: listen.port, 8095)")
    r = review_sub.add_parser("export", help="write the dataset with reviewed expected answers")
    r.add_argument("--out", "-o", required=True, help="dataset file to write ('-' = stdout)")
    r = review_sub.add_parser("publish", help="publish queued human scores to the score sink")
    r.add_argument("--all", action="store_true", help="publish every rated item again")
    for r in review_sub.choices.values():
        r.add_argument("--config", "-c", help="review config (YAML)")
        r.add_argument("--db", help="SQLite file (default: db_path, review.sqlite)")
        r.set_defaults(func=cmd_review)
    # The commands' list shows the visible ones only (argparse would name every choice).
    sub.metavar = "{" + ",".join(n for n in sub.choices if n not in HIDDEN_COMMANDS) + "}"
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"shadoweval: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # A file no command checked itself: still one line naming it, and the input code.
        if exc.filename is None:
            raise
        print(f"shadoweval: {args.command}: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
