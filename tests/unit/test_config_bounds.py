"""Configuration that must be refused (or warned about) before anything starts: unbounded
timeouts and buffers, unusable sink paths, port clashes, credentials in URLs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from shadoweval.cli import main
from shadoweval.config.base import ConfigError
from shadoweval.config.proxy import FileSink, parse

PRIMARY = {"url": "http://127.0.0.1:9001"}
CANDIDATE = {"name": "cand", "url": "http://127.0.0.1:9002"}


def error(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse({"primary": PRIMARY, **raw}, environ={})
    return str(info.value)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"primary": {**PRIMARY, "timeout_s": float("inf")}}, "primary.timeout_s"),
        ({"primary": {**PRIMARY, "connect_timeout_s": float("nan")}}, "primary.connect_timeout_s"),
        ({"candidates": [{**CANDIDATE, "timeout_s": float("inf")}]}, "candidates.0.timeout_s"),
        ({"candidates": [{**CANDIDATE, "timeout_s": 1e9}]}, "candidates.0.timeout_s"),
        (
            {"candidates": [{**CANDIDATE, "retry": {"max_backoff_s": float("inf")}}]},
            "candidates.0.retry.max_backoff_s",
        ),
        ({"limits": {"header_timeout_s": float("inf")}}, "limits.header_timeout_s"),
        ({"limits": {"body_timeout_s": float("nan")}}, "limits.body_timeout_s"),
        ({"limits": {"idle_timeout_s": float("inf")}}, "limits.idle_timeout_s"),
        ({"limits": {"max_body_bytes": 10**12}}, "limits.max_body_bytes"),
        ({"limits": {"capture_max_bytes": 10**15}}, "limits.capture_max_bytes"),
        ({"limits": {"max_record_bytes": 10**12}}, "limits.max_record_bytes"),
        ({"sink": {"kind": "file", "buffer_records": 10**12}}, "sink.file.buffer_records"),
        (
            {"sink": {"kind": "file", "flush_interval_s": float("inf")}},
            "sink.file.flush_interval_s",
        ),
        (
            {"sink": {"kind": "kafka", "bootstrap_servers": "k:9092", "buffer_records": 10**9}},
            "sink.kafka.buffer_records",
        ),
        (
            {"sink": {"kind": "kafka", "bootstrap_servers": "k:9092", "request_timeout_ms": 10**9}},
            "sink.kafka.request_timeout_ms",
        ),
        ({"shadow_worker": {"max_pending_bytes": 10**13}}, "shadow_worker.max_pending_bytes"),
        ({"shutdown": {"grace_s": float("inf")}}, "shutdown.grace_s"),
    ],
)
def test_unbounded_timeouts_and_buffers_are_refused_naming_the_key(
    raw: dict[str, Any], key: str
) -> None:
    assert f"  {key}: " in error(raw)


def test_yaml_infinity_is_refused() -> None:
    # What an operator writes: `.inf` in YAML is a float infinity.
    raw = yaml.safe_load("candidates: [{name: c, url: 'http://127.0.0.1:9002', timeout_s: .inf}]")
    assert "candidates.0.timeout_s" in error(raw)


def test_shipped_defaults_sit_within_the_bounds() -> None:
    cfg = parse({"primary": PRIMARY, "candidates": [CANDIDATE]}, environ={})
    assert cfg.candidates[0].timeout_s == 120


def test_sink_without_kind_is_a_file_sink() -> None:
    cfg = parse({"primary": PRIMARY, "sink": {"path": "x.jsonl"}}, environ={})
    assert isinstance(cfg.sink, FileSink)
    assert cfg.sink.path == "x.jsonl"


def test_admin_port_equal_to_the_proxy_port_is_refused() -> None:
    msg = error({"listen": {"port": 8080}, "admin": {"port": 8080}})
    assert "admin.port: 8080 is also listen.port" in msg
    # Port 0 (pick any) twice is two different ports.
    parse({"primary": PRIMARY, "listen": {"port": 0}, "admin": {"port": 0}}, environ={})


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"primary": {"url": "http://alice:s3cr3t-pw@127.0.0.1:9001"}}, "primary.url"),
        ({"primary": {"url": "https://tok3n-only@llm.example"}}, "primary.url"),
        ({"candidates": [{**CANDIDATE, "url": "http://bob:s3cr3t-pw@c:9/v1"}]}, "candidates.0.url"),
    ],
)
def test_userinfo_in_upstream_urls_is_refused_and_never_printed(
    raw: dict[str, Any], key: str
) -> None:
    msg = error(raw)
    assert f"  {key}: must not carry user:password@" in msg
    assert "s3cr3t-pw" not in msg and "tok3n-only" not in msg
    assert "***@" in msg


def test_a_malformed_url_with_userinfo_is_not_printed_either() -> None:
    msg = error({"primary": {"url": "ftp://alice:s3cr3t-pw@host"}})
    assert "primary.url" in msg and "s3cr3t-pw" not in msg


def test_sink_path_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    cfg = parse({"primary": PRIMARY, "sink": {"path": str(tmp_path)}}, environ={})
    assert cfg.path_problems() == [f"sink.path: {tmp_path} is a directory; name a file in it"]


def test_sink_path_under_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("")
    path = tmp_path / "plain" / "sub" / "pairs.jsonl"
    cfg = parse({"primary": PRIMARY, "sink": {"path": str(path)}}, environ={})
    [problem] = cfg.path_problems()
    assert problem.startswith(f"sink.path: {path} cannot be created: ")
    assert "is not a directory" in problem


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_sink_path_in_a_read_only_directory_is_refused(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    cfg = parse({"primary": PRIMARY, "sink": {"path": str(ro / "p.jsonl")}}, environ={})
    assert "is not writable" in cfg.path_problems()[0]


def test_a_sink_path_still_to_be_created_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "pairs.jsonl"
    cfg = parse({"primary": PRIMARY, "sink": {"path": str(path)}}, environ={})
    assert cfg.path_problems() == []
    assert not (tmp_path / "new").exists()  # checking creates nothing


def test_kafka_spill_path_is_checked_too(tmp_path: Path) -> None:
    sink = {"kind": "kafka", "bootstrap_servers": "k:9092", "spill_path": str(tmp_path)}
    cfg = parse({"primary": PRIMARY, "sink": sink}, environ={})
    assert cfg.path_problems()[0].startswith("sink.spill_path: ")


def test_admin_on_a_public_address_without_token_warns() -> None:
    cfg = parse({"primary": PRIMARY, "admin": {"host": "0.0.0.0"}}, environ={})
    [warning] = cfg.exposure_warnings()
    assert warning.startswith("admin.host: 0.0.0.0 is reachable from other hosts")
    for admin in ({"host": "127.0.0.1"}, {"host": "::1"}, {"host": "localhost"}):
        assert parse({"primary": PRIMARY, "admin": admin}, environ={}).exposure_warnings() == []
    guarded = {"host": "0.0.0.0", "token_env": "ADMIN_TOKEN"}
    assert parse({"primary": PRIMARY, "admin": guarded}, environ={}).exposure_warnings() == []


def write(tmp_path: Path, raw: dict[str, Any]) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"primary": PRIMARY, **raw}))
    return str(path)


def test_check_config_refuses_a_directory_sink_path_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", write(tmp_path, {"sink": {"path": str(tmp_path)}})]) == 2
    err = capsys.readouterr().err
    assert err == f"shadoweval: sink.path: {tmp_path} is a directory; name a file in it\n"


def test_check_config_prints_the_port_clash_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = {"listen": {"port": 9000}, "admin": {"port": 9000}}
    assert main(["check-config", write(tmp_path, raw)]) == 2
    err = capsys.readouterr().err
    assert "admin.port: 9000 is also listen.port" in err
    assert "Traceback" not in err


def test_check_config_warns_about_an_open_admin_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = {"admin": {"host": "0.0.0.0"}, "sink": {"path": str(tmp_path / "p.jsonl")}}
    assert main(["check-config", write(tmp_path, raw)]) == 0
    assert "warning: admin.host: 0.0.0.0 is reachable" in capsys.readouterr().err


def test_serve_refuses_an_unusable_sink_path_before_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import shadoweval.cli as cli

    monkeypatch.setattr(cli, "_setup_logging", lambda level: None)  # pytest owns logging
    assert main(["serve", "--config", write(tmp_path, {"sink": {"path": str(tmp_path)}})]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"shadoweval: cannot start:\n  sink.path: {tmp_path} is a directory; name a file in it\n"
    )
