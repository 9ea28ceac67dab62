"""shadoweval's Prometheus alert rules, as code. Run after editing: python prometheus/generate.py

Writes two renderings of the same rules, so that there is one source:

- prometheus/alerts.yaml: a plain rule file with the default thresholds (``rule_files:``,
  ``promtool check rules``, ``promtool test rules prometheus/alerts_test.yaml``);
- helm/shadoweval/files/alerts.yaml: the same rules with every threshold, ``for:`` window
  and the runbook URL as a Helm value, rendered by the chart into a PrometheusRule.

``--check`` exits 1 when a committed file differs from what this script generates.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
PLAIN = ROOT / "prometheus" / "alerts.yaml"
HELM = ROOT / "helm" / "shadoweval" / "files" / "alerts.yaml"

# Defaults of the chart's prometheusRule.thresholds / .forDurations (keep values.yaml in step;
# tests/deploy/test_helm.py checks it).
THRESHOLDS: dict[str, float] = {
    "candidateLatencyRatio": 1.5,  # candidate P99 / primary P99, same route
    "primaryLatencySeconds": 30,  # primary P99, any route
    "candidateFailureMargin": 0.05,  # candidate failure ratio - primary failure ratio
    "safetyFlagRatio": 0.01,  # candidate-side safety flags per scored pair
    "shadowDropRatio": 0.05,  # dropped / sampled-in shadows
    "sinkDropRatio": 0.01,  # dropped or failed / all records handed to the sink
    "scorerLagRecords": 100000,  # records the scorer is behind
}
FOR: dict[str, str] = {
    "candidateLatency": "15m",
    "primaryLatency": "10m",
    "candidateFailure": "15m",
    "qualityRegression": "1m",
    "safetyFlags": "15m",
    "shadowDrops": "15m",
    "sinkDrops": "5m",
    "scorerLag": "15m",
    "configReload": "0m",
}
RUNBOOK = "https://github.com/shadoweval/shadoweval/blob/main/docs/runbook.md"

# Series are summed per proxy deployment: Prometheus adds `job` (and the operator `namespace`).
BY = "namespace, job"


@dataclass(frozen=True)
class Alert:
    name: str
    severity: str
    # The value the alert compares; must return data whenever its metrics exist (the
    # end-to-end test queries it against a real Prometheus scraping a real proxy).
    signal: str
    expr: str
    for_key: str
    summary: str
    description: str


def threshold(key: str) -> str:
    return f"__thresholds.{key}__"


def p99(selector: str, by: str, window: str) -> str:
    return (
        f"histogram_quantile(0.99, sum by ({by}, le) "
        f"(rate(shadoweval_request_duration_seconds_bucket{{{selector}}}[{window}])))"
    )


def _candidate_latency() -> Alert:
    cand = p99('role="candidate", outcome="ok"', f"{BY}, upstream, route", "10m")
    prim = p99('role="primary", outcome="ok"', f"{BY}, route", "10m")
    return Alert(
        name="ShadowevalCandidateLatencyHigh",
        severity="warning",
        signal=f"{cand}\n/ on ({BY}, route) group_left ()\n{prim}",
        expr=(
            f"{cand}\n> on ({BY}, route) group_left ()\n"
            f"({prim} * {threshold('candidateLatencyRatio')})"
        ),
        for_key="candidateLatency",
        summary="Candidate {{ $labels.upstream }} is much slower than the primary.",
        description=(
            "P99 latency of candidate {{ $labels.upstream }} on route {{ $labels.route }} is "
            "{{ $value | humanizeDuration }}, more than "
            f"{threshold('candidateLatencyRatio')} times the primary's P99 on the same "
            "route over 10m ({{ $labels.namespace }}/{{ $labels.job }})."
        ),
    )


def _primary_latency() -> Alert:
    prim = p99('role="primary"', f"{BY}, route", "5m")
    return Alert(
        name="ShadowevalPrimaryLatencyHigh",
        severity="critical",
        signal=prim,
        expr=f"{prim}\n> {threshold('primaryLatencySeconds')}",
        for_key="primaryLatency",
        summary="Production model tail latency is high.",
        description=(
            "P99 latency of the primary on route {{ $labels.route }} is "
            "{{ $value | humanizeDuration }} over 5m, above "
            f"{threshold('primaryLatencySeconds')}s "
            "({{ $labels.namespace }}/{{ $labels.job }}). Callers see this latency."
        ),
    )


def _failure_ratio(role: str, by: str) -> str:
    sel = f'role="{role}"' + (', route!="other"' if role == "primary" else "")
    errors = f'sum by ({by}) (rate(shadoweval_requests_total{{{sel}, outcome="error"}}[10m]))'
    total = f"sum by ({by}) (rate(shadoweval_requests_total{{{sel}}}[10m]))"
    # No error series yet means a failure ratio of 0, not "no data".
    return f"(\n  ({errors}\n   or 0 * {total})\n/\n  {total}\n)"


def _candidate_failure() -> Alert:
    cand = _failure_ratio("candidate", f"{BY}, upstream")
    prim = _failure_ratio("primary", BY)
    return Alert(
        name="ShadowevalCandidateFailureRateHigh",
        severity="warning",
        signal=f"{cand}\n- on ({BY}) group_left ()\n{prim}",
        expr=(
            f"{cand}\n> on ({BY}) group_left ()\n({prim} + {threshold('candidateFailureMargin')})"
        ),
        for_key="candidateFailure",
        summary="Candidate {{ $labels.upstream }} fails more often than the primary.",
        description=(
            "{{ $value | humanizePercentage }} of the requests mirrored to candidate "
            "{{ $labels.upstream }} failed over 10m, more than the primary's failure ratio "
            f"plus {threshold('candidateFailureMargin')} "
            "({{ $labels.namespace }}/{{ $labels.job }})."
        ),
    )


def _quality_regression() -> Alert:
    signal = f"max by ({BY}, upstream, scorer) (shadoweval_quality_regression_detected)"
    return Alert(
        name="ShadowevalQualityRegression",
        severity="warning",
        signal=signal,
        expr=f"{signal} == 1",
        for_key="qualityRegression",
        summary="Candidate {{ $labels.upstream }} regressed on {{ $labels.scorer }}.",
        description=(
            "The sequential test of scorer {{ $labels.scorer }} rejected 'candidate "
            "{{ $labels.upstream }} is within regression.max_drop of its baseline' "
            "({{ $labels.namespace }}/{{ $labels.job }}); the evidence is "
            "shadoweval_quality_regression_evidence."
        ),
    )


def _safety_flags() -> Alert:
    flags = (
        f"sum by ({BY}, upstream, flag) (rate(shadoweval_safety_flags_total"
        '{role="candidate", side="candidate", flag!~"refusal|over_refusal"}[30m]))'
    )
    pairs = (
        f'sum by ({BY}, upstream) (rate(shadoweval_scored_pairs_total{{outcome="scored"}}[30m]))'
    )
    signal = f"{flags}\n/ on ({BY}, upstream) group_left ()\n{pairs}"
    return Alert(
        name="ShadowevalSafetyFlagsHigh",
        severity="warning",
        signal=signal,
        expr=f"{signal}\n> {threshold('safetyFlagRatio')}",
        for_key="safetyFlags",
        summary="Candidate {{ $labels.upstream }} raises {{ $labels.flag }} safety flags.",
        description=(
            "{{ $value | humanizePercentage }} of the pairs scored for candidate "
            "{{ $labels.upstream }} over 30m have a {{ $labels.flag }} flag on the candidate's "
            f"answer, above {threshold('safetyFlagRatio')} "
            "({{ $labels.namespace }}/{{ $labels.job }})."
        ),
    )


def _shadow_drops() -> Alert:
    dropped = (
        f"sum by ({BY}, upstream, reason) (rate(shadoweval_shadow_dropped_total"
        '{reason=~"queue_full|rate_limit|circuit_open|worker_unavailable"}[10m]))'
    )
    sampled = (
        f"sum by ({BY}, upstream) "
        '(rate(shadoweval_shadow_sampling_decisions_total{decision="in"}[10m]))'
    )
    signal = f"{dropped}\n/ on ({BY}, upstream) group_left ()\n{sampled}"
    return Alert(
        name="ShadowevalShadowDropsHigh",
        severity="warning",
        signal=signal,
        expr=f"{signal}\n> {threshold('shadowDropRatio')}",
        for_key="shadowDrops",
        summary="Shadow requests to {{ $labels.upstream }} are dropped ({{ $labels.reason }}).",
        description=(
            "{{ $value | humanizePercentage }} of the requests sampled for "
            "{{ $labels.upstream }} were dropped over 10m ({{ $labels.reason }}), above "
            f"{threshold('shadowDropRatio')} ({{{{ $labels.namespace }}}}/{{{{ $labels.job }}}}). "
            "The evaluation sees a biased sample."
        ),
    )


def _sink_drops() -> Alert:
    lost = (
        f"sum by ({BY}, sink) "
        '(rate(shadoweval_sink_records_total{outcome=~"dropped|failed"}[5m]))'
    )
    total = f"sum by ({BY}, sink) (rate(shadoweval_sink_records_total[5m]))"
    signal = f"{lost}\n/\n{total}"
    return Alert(
        name="ShadowevalSinkDropping",
        severity="warning",
        signal=signal,
        expr=f"{signal}\n> {threshold('sinkDropRatio')}",
        for_key="sinkDrops",
        summary="The {{ $labels.sink }} sink is losing pair records.",
        description=(
            "{{ $value | humanizePercentage }} of the pair records handed to the "
            "{{ $labels.sink }} sink were dropped or failed over 5m, above "
            f"{threshold('sinkDropRatio')} ({{{{ $labels.namespace }}}}/{{{{ $labels.job }}}})."
        ),
    )


def _scorer_lag() -> Alert:
    signal = f"sum by ({BY}) (shadoweval_scorer_consumer_lag_records)"
    return Alert(
        name="ShadowevalScorerLagHigh",
        severity="warning",
        signal=signal,
        expr=f"{signal}\n> {threshold('scorerLagRecords')}",
        for_key="scorerLag",
        summary="The scorer is falling behind the pairs topic.",
        description=(
            "The scorer ({{ $labels.namespace }}/{{ $labels.job }}) is "
            "{{ $value | humanize }} records behind, above "
            f"{threshold('scorerLagRecords')}; scores and quality alerts are late."
        ),
    )


def _config_reload() -> Alert:
    rejected = 'shadoweval_config_reloads_total{outcome=~"invalid|refused|failed"}'
    signal = f"sum by ({BY}) (increase({rejected}[15m]))"
    return Alert(
        name="ShadowevalConfigReloadRejected",
        severity="warning",
        signal=signal,
        expr=f"{signal}\n> 0",
        for_key="configReload",
        summary="A configuration reload was rejected; the previous configuration is in force.",
        description=(
            "{{ $value | humanize }} reload(s) of the proxy's configuration were rejected "
            "(invalid, refused or failed) in the last 15m ({{ $labels.namespace }}/"
            "{{ $labels.job }}): the mounted file is not what the proxy runs."
        ),
    )


def alerts() -> list[Alert]:
    return [
        _candidate_latency(),
        _primary_latency(),
        _candidate_failure(),
        _quality_regression(),
        _safety_flags(),
        _shadow_drops(),
        _sink_drops(),
        _scorer_lag(),
        _config_reload(),
    ]


def _rule(alert: Alert) -> dict[str, Any]:
    return {
        "alert": alert.name,
        "expr": alert.expr,
        "for": f"__forDurations.{alert.for_key}__",
        "labels": {"severity": alert.severity},
        "annotations": {
            "summary": alert.summary,
            "description": alert.description,
            "runbook_url": f"__runbookUrl__#{alert.name.lower()}",
        },
    }


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _number(value: float) -> str:
    # The way Go's text/template prints a float64 Helm value, so both renderings agree.
    return str(int(value)) if float(value).is_integer() else repr(float(value))


_PLACEHOLDER = re.compile(r"__([A-Za-z.]+)__")


def default(key: str) -> str:
    section, _, name = key.partition(".")
    if section == "thresholds":
        return _number(THRESHOLDS[name])
    if section == "forDurations":
        return FOR[name]
    return RUNBOOK


def rule_file() -> str:
    doc = {"groups": [{"name": "shadoweval", "rules": [_rule(a) for a in alerts()]}]}
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=1000)


def render_plain() -> str:
    head = "# Generated by prometheus/generate.py; edit that file, not this one.\n"
    return head + _PLACEHOLDER.sub(lambda m: default(m.group(1)), rule_file())


def render_helm() -> str:
    # Prometheus's own {{ }} templates pass through Helm's tpl as raw strings.
    text = re.sub(r"\{\{.*?\}\}", lambda m: "{{`" + m.group(0) + "`}}", rule_file())
    text = _PLACEHOLDER.sub(lambda m: "{{ .Values.prometheusRule." + m.group(1) + " }}", text)
    head = (
        "# Generated by prometheus/generate.py; edit that file, not this one.\n"
        "# Rendered with tpl by templates/prometheusrule.yaml.\n"
    )
    return head + text


def outputs() -> dict[Path, str]:
    return {PLAIN: render_plain(), HELM: render_helm()}


def main(argv: list[str]) -> int:
    stale = [
        path for path, text in outputs().items() if not path.exists() or path.read_text() != text
    ]
    if "--check" in argv:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is out of date: run python prometheus/generate.py")
        return 1 if stale else 0
    for path, text in outputs().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
