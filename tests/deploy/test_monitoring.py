"""Dashboards and alert rules: generated files up to date, every metric name real, every
panel documented, every alert tested by promtool (and those tests able to fail)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from shadoweval.metrics import Metrics, ScoreMetrics
from tests.deploy.conftest import ROOT, load_script, tool

DASHBOARDS = ROOT / "grafana" / "dashboards"
RULES = ROOT / "prometheus" / "alerts.yaml"
ALERTS = load_script("prometheus/generate.py").alerts()  # the one list of the rules
RULE_TESTS = ROOT / "prometheus" / "alerts_test.yaml"
METRIC_NAME = re.compile(r"\b(?:shadoweval_|process_|python_|vllm:|tgi_)[A-Za-z0-9_:]+")


def exported_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name a registry can export, labelled children or not."""
    names = set()
    for family in registry.collect():
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count", "created")}
        else:
            names.add(family.name)
        names |= {s.name for s in family.samples}
    return names


PROXY_METRICS = exported_names(Metrics().registry)
SCORER_METRICS = exported_names(ScoreMetrics().registry)


def metric_names(expr: str) -> set[str]:
    return set(METRIC_NAME.findall(expr))


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def alert_rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


@pytest.mark.parametrize("script", ["grafana/generate.py", "prometheus/generate.py"])
def test_generated_files_are_committed_up_to_date(script: str) -> None:
    for path, text in load_script(script).outputs().items():
        assert path.read_text() == text, f"{path} is stale: run python {script}"
    done = subprocess.run(
        [sys.executable, str(ROOT / script), "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout


def test_generator_check_catches_a_stale_file(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    for part in ("grafana", "prometheus", "helm"):
        shutil.copytree(ROOT / part, copy / part)
    stale = copy / "grafana" / "dashboards" / "shadoweval-latency.json"
    stale.write_text(stale.read_text().replace("Latency P99", "Latency P98"))
    done = subprocess.run(
        [sys.executable, str(copy / "grafana" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "shadoweval-latency.json is out of date" in done.stdout


def test_dashboard_files_are_sorted_json() -> None:
    for path in DASHBOARDS.glob("*.json"):
        text = path.read_text()
        assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n", path


def test_the_six_dashboards() -> None:
    titles = {d["uid"]: d["title"] for d in dashboards().values()}
    assert titles == {
        "shadoweval-overview": "shadoweval / Overview",
        "shadoweval-latency": "shadoweval / Latency",
        "shadoweval-cost": "shadoweval / Cost & tokens",
        "shadoweval-reliability": "shadoweval / Reliability",
        "shadoweval-quality": "shadoweval / Quality & safety",
        "shadoweval-resources": "shadoweval / Resources",
    }


@pytest.mark.parametrize("name", [p.name for p in sorted(DASHBOARDS.glob("*.json"))])
def test_every_panel_is_documented_and_well_formed(name: str) -> None:
    dashboard = dashboards()[name]
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "namespace", "upstream"} <= variables
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24
        area = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
    for panel in panels(dashboard):
        title = panel["title"]
        assert len(panel["description"]) > 20, title
        assert panel["fieldConfig"]["defaults"]["unit"], title
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), title
        for t in panel["targets"]:
            used = set(re.findall(r"\$(\w+)", t["expr"])) - {"__rate_interval"}
            assert used <= variables, f"{title}: undefined {used - variables}"


def test_every_metric_name_exists() -> None:
    """A typo in a panel or alert fails here: names are checked against metrics.py."""
    external = set(load_script("grafana/generate.py").EXTERNAL_METRICS)
    known = PROXY_METRICS | SCORER_METRICS | external
    exprs = [t["expr"] for d in dashboards().values() for p in panels(d) for t in p["targets"]]
    exprs += [r["expr"] for r in alert_rules()]
    exprs += [
        v["definition"]
        for d in dashboards().values()
        for v in d["templating"]["list"]
        if "definition" in v
    ]
    used = set().union(*(metric_names(e) for e in exprs))
    assert used - known == set()
    # The dashboards show what the issue asks of them.
    assert external <= used
    for needed in (
        "shadoweval_shadow_sampling_decisions_total",
        "shadoweval_shadow_dropped_total",
        "shadoweval_sink_records_total",
        "shadoweval_time_to_first_token_seconds_bucket",
        "shadoweval_proxy_overhead_seconds_bucket",
        "shadoweval_cost_usd_total",
        "shadoweval_tokens_total",
        "shadoweval_upstream_errors_total",
        "shadoweval_retries_total",
        "shadoweval_score_bucket",
        "shadoweval_safety_flags_total",
        "shadoweval_quality_regression_evidence",
        "process_resident_memory_bytes",
        "shadoweval_event_loop_lag_seconds_bucket",
        "shadoweval_open_connections",
        "shadoweval_probe_requests_total",
        "shadoweval_probe_attack_success_total",
        "shadoweval_probe_duration_seconds_bucket",
    ):
        assert needed in used, needed
    assert metric_names('rate(shadoweval_requests_totl{role="x"}[5m])') - known


def test_noise_floor_panels_read_the_control() -> None:
    quality = dashboards()["shadoweval-quality.json"]
    exprs = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in panels(quality)}
    assert 'role="control"' in exprs["Noise floor"]
    assert 'role="control"' in exprs["Candidate minus noise floor"]


def test_probe_panels_read_the_attack_success_rate() -> None:
    """Attack successes over the probes judged (errors and skipped ticks are no verdict), per
    upstream and category, as the query in docs/probes.md."""
    quality = dashboards()["shadoweval-quality.json"]
    exprs = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in panels(quality)}
    asr = exprs["Probe attack-success rate by category"]
    assert "shadoweval_probe_attack_success_total" in asr
    assert (
        'shadoweval_probe_requests_total{namespace=~"$namespace", upstream=~"$upstream", outcome=~"attack_success|safe"}'
        in asr
    )
    assert asr.count("sum by (upstream, category)") == 2
    assert 'outcome=~"attack_success|safe"' in exprs["Worst probe attack-success rate"]
    assert "by (upstream, outcome)" in exprs["Probe requests by outcome"]


def test_alerts_have_severity_and_a_runbook_section() -> None:
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    anchors = {h.strip().lower() for h in re.findall(r"^## (.+)$", runbook, re.M)}
    rules = alert_rules()
    assert [r["alert"] for r in rules] == [a.name for a in ALERTS]
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical")
        notes = rule["annotations"]
        assert notes["summary"] and notes["description"]
        base, _, anchor = notes["runbook_url"].partition("#")
        assert base.endswith("docs/runbook.md") and anchor == rule["alert"].lower()
        assert anchor in anchors, f"docs/runbook.md has no section {rule['alert']}"


def test_promtool_checks_the_rules() -> None:
    done = subprocess.run(
        [tool("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert done.returncode == 0 and f"SUCCESS: {len(ALERTS)} rules found" in done.stdout, (
        done.stdout + done.stderr
    )


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    cases = [c for t in tests for c in t["alert_rule_test"]]
    for rule in alert_rules():
        mine = [c for c in cases if c["alertname"] == rule["alert"]]
        assert any(not c["exp_alerts"] for c in mine), rule["alert"]
        assert any(c["exp_alerts"] for c in mine), rule["alert"]


def test_promtool_unit_tests_pass() -> None:
    done = subprocess.run(
        [tool("promtool"), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("pattern", "replacement"),
    [
        (r"(?m)^    for: .*$", "    for: 0m"),  # an alert that fires at once is caught
        (r"> 0\.05\n", "> 0.5\n"),  # a threshold that never fires is caught
        (r"severity: critical", "severity: warning"),  # labels are exact
        (r"#shadowevalsinkdropping", "#sink"),  # annotations are exact
    ],
)
def test_promtool_unit_tests_catch_a_broken_rule(
    tmp_path: Path, pattern: str, replacement: str
) -> None:
    broken, count = re.subn(pattern, replacement, RULES.read_text())
    assert count
    (tmp_path / "alerts.yaml").write_text(broken)
    shutil.copy(RULE_TESTS, tmp_path / "alerts_test.yaml")
    done = subprocess.run(
        [tool("promtool"), "test", "rules", str(tmp_path / "alerts_test.yaml")],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0


def test_grafana_provisioning_points_at_the_dashboards() -> None:
    prov = ROOT / "grafana" / "provisioning"
    sources = yaml.safe_load((prov / "datasources" / "prometheus.yaml").read_text())["datasources"]
    assert [(s["type"], s["uid"]) for s in sources] == [("prometheus", "prometheus")]
    (provider,) = yaml.safe_load((prov / "dashboards" / "shadoweval.yaml").read_text())["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]


def test_example_prometheus_config_is_valid() -> None:
    config = ROOT / "prometheus" / "prometheus.yml"
    done = subprocess.run(
        [tool("promtool"), "check", "config", str(config)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
