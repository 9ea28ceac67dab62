"""The Helm chart: helm lint and helm template for every feature combination (ci/*.yaml and
the example application chart with the sidecar), every rendered object validated by
kubeconform (strict) against schemas vendored for one Kubernetes version, and the rendered
configuration validated by shadoweval itself."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import shadoweval
from shadoweval.config.probes import BUILTIN_SUITES
from shadoweval.config.proxy import Config, KafkaSink, load, parse
from shadoweval.config.scorer import KafkaPairSource, KafkaScoreSink, ScorerConfig, load_scorer
from shadoweval.probes.suite import load_suites
from tests.deploy.conftest import ROOT, load_script, tool

CHART = ROOT / "helm" / "shadoweval"
EXAMPLE = ROOT / "helm" / "examples" / "app-with-sidecar"
# The Kubernetes version the schemas under tests/data/k8s-schemas were generated for
# (scripts/vendor_k8s_schemas.py).
KUBE_VERSION = "1.34.3"
SCHEMAS = ROOT / "tests" / "data" / "k8s-schemas"
SCHEMA_LOCATIONS = (
    str(SCHEMAS / "{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}")
    + "/{{ .ResourceKind }}{{ .KindSuffix }}.json",
    str(SCHEMAS / "prometheus-operator-v0.85.0") + "/{{ .ResourceKind }}{{ .KindSuffix }}.json",
)

PROXY = {"ConfigMap", "ServiceAccount", "Deployment", "Service", "PodDisruptionBudget"}
MONITORING = {"ServiceMonitor", "PrometheusRule"}
# values file (under ci/) -> the kinds it must render (dashboard ConfigMaps aside)
CASES: dict[str, set[str]] = {
    "": PROXY,
    "standalone-values.yaml": PROXY,
    "monitoring-values.yaml": PROXY | MONITORING,
    "sidecar-values.yaml": {"ConfigMap", "PodMonitor"},
    "sidecar-monitoring-values.yaml": {
        "ConfigMap",
        "ServiceAccount",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "PodMonitor",
    }
    | MONITORING,
    "scorer-values.yaml": PROXY | {"ServiceMonitor"},
    "reload-values.yaml": PROXY,
    "scorer-hpa-values.yaml": {"ConfigMap", "ServiceAccount", "Deployment", "Service"}
    | {"PodDisruptionBudget", "HorizontalPodAutoscaler"},
}


def test_every_ci_values_file_is_a_case() -> None:
    assert {p.name for p in (CHART / "ci").glob("*.yaml")} == set(CASES) - {""}


@pytest.fixture(scope="session")
def helm_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("helm-home")
    return {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        "KUBECONFIG": str(home / "no-cluster"),
    }


def helm(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    if args[0] in ("template", "lint") and "--kube-version" not in args:
        # A helm built with `go install` defaults to Kubernetes 1.20; pin the vendored one.
        args = (*args, "--kube-version", KUBE_VERSION)
    done = subprocess.run([tool("helm"), *args], env=env, capture_output=True, text=True)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def values_args(case: str) -> list[str]:
    return ["-f", str(CHART / "ci" / case)] if case else []


def template(env: dict[str, str], chart: Path, *args: str) -> str:
    out = helm(
        env,
        "template",
        "rel",
        str(chart),
        "--namespace",
        "prod",
        "--kube-version",
        KUBE_VERSION,
        *args,
    )
    return out.stdout


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def kubeconform(text: str) -> subprocess.CompletedProcess[str]:
    args = [tool("kubeconform"), "-strict", "-summary", "-output", "json"]
    args += ["-kubernetes-version", KUBE_VERSION]
    for location in SCHEMA_LOCATIONS:
        args += ["-schema-location", location]
    return subprocess.run([*args, "-"], input=text, capture_output=True, text=True)


def assert_valid(text: str) -> None:
    done = kubeconform(text)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)["summary"]
    # A kind without a vendored schema is an error, never a skip.
    assert summary["skipped"] == 0 and summary["errors"] == 0 and summary["invalid"] == 0
    assert summary["valid"] == len(documents(text)), summary


@pytest.mark.parametrize("case", CASES)
def test_helm_lint(helm_env: dict[str, str], case: str) -> None:
    helm(
        helm_env, "lint", "--strict", "--kube-version", KUBE_VERSION, str(CHART), *values_args(case)
    )


@pytest.mark.parametrize("case", CASES)
def test_rendered_objects_are_valid_kubernetes(helm_env: dict[str, str], case: str) -> None:
    text = template(helm_env, CHART, *values_args(case))
    kinds = {d["kind"] for d in documents(text)}
    assert kinds == CASES[case]
    assert_valid(text)


def config_maps(docs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}


def container(docs: list[dict[str, Any]], deployment: str) -> dict[str, Any]:
    (pod,) = [
        d["spec"]["template"]["spec"]
        for d in docs
        if d["kind"] == "Deployment" and d["metadata"]["name"] == deployment
    ]
    (c,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    return {**c, "_volumes": volumes}


def mounted_config(c: dict[str, Any], maps: dict[str, dict[str, str]], tmp: Path) -> Path:
    """The file the container's --config names, from the ConfigMap mounted at its directory,
    written to a copy of that directory under tmp (so the file loaders read it)."""
    path = Path(c["args"][c["args"].index("--config") + 1])
    (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == str(path.parent)]
    data = maps[c["_volumes"][mount["name"]]["configMap"]["name"]]
    assert path.name in data, f"{c['name']}: --config {path} is not in the mounted ConfigMap"
    copy = tmp / c["name"] / path.name
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_text(data[path.name])
    return copy


def assert_files_mounted(c: dict[str, Any], *securities: Any) -> None:
    """Every Kafka credential file a configuration names is on a volume of the container."""
    mounts = [m["mountPath"] for m in c["volumeMounts"]]
    for security in securities:
        for name in ("sasl_password_file", "ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(security, name)
            if path:
                assert any(path.startswith(m.rstrip("/") + "/") for m in mounts), (
                    f"{c['name']}: {name} {path} is on no volume (mounts: {mounts})"
                )


def assert_suites_found(c: dict[str, Any], config_file: Path) -> None:
    """Probe suites are the image's (builtin) or on a volume of their own: a path next to the
    config file is hidden by the ConfigMap mounted over /etc/shadoweval."""
    suites = (yaml.safe_load(config_file.read_text()).get("probes") or {}).get("suites") or []
    config_dir = Path(c["args"][c["args"].index("--config") + 1]).parent
    mounts = [m["mountPath"] for m in c["volumeMounts"] if m["mountPath"] != str(config_dir)]
    for entry in suites:
        if entry == BUILTIN_SUITES:
            assert load_suites([entry])
            continue
        path = str(config_dir / entry)  # as the container resolves it
        assert any(path == m or path.startswith(m + "/") for m in mounts), (
            f"probes.suites {entry} is on no volume of the proxy (mounts: {mounts})"
        )


@pytest.mark.parametrize("case", CASES)
def test_rendered_configuration_is_valid_for_shadoweval(
    helm_env: dict[str, str], case: str, tmp_path: Path
) -> None:
    """Each process's configuration file, as its container would find it, loaded by that
    process's own loader: the proxy's by load, the scorer's by load_scorer (a different
    shape; both forbid unknown keys)."""
    docs = documents(template(helm_env, CHART, *values_args(case)))
    maps = config_maps(docs)
    sidecar = "sidecar" in case
    if sidecar:
        raw = maps["rel-shadoweval"]["shadoweval.yaml"]
        (tmp_path / "shadoweval.yaml").write_text(raw)
        cfg = load(tmp_path / "shadoweval.yaml", environ={})
    else:
        proxy = container(docs, "rel-shadoweval")
        config_file = mounted_config(proxy, maps, tmp_path)
        cfg = load(config_file, environ={})
        if isinstance(cfg.sink, KafkaSink):
            assert_files_mounted(proxy, cfg.sink.security)
        assert_suites_found(proxy, config_file)
    assert cfg.listen.host == ("127.0.0.1" if sidecar else "0.0.0.0")
    assert (cfg.listen.port, cfg.admin.host, cfg.admin.port) == (8080, "0.0.0.0", 9464)
    assert "scorer.yaml" not in maps["rel-shadoweval"]

    values = yaml.safe_load((CHART / "ci" / case).read_text()) if case else {}
    assert cfg.listen.processes == values.get("proxy", {}).get("processes", 1)
    scorer_enabled = bool(values.get("scorer", {}).get("enabled"))
    assert ("rel-shadoweval-scorer" in maps) == scorer_enabled
    if not scorer_enabled:
        return
    scorer = container(docs, "rel-shadoweval-scorer")
    score_cfg = load_scorer(mounted_config(scorer, maps, tmp_path), environ={})
    assert (score_cfg.admin.host, score_cfg.admin.port) == ("0.0.0.0", 9464)
    # The scorer consumes the pairs topic the proxy produces to.
    assert isinstance(cfg.sink, KafkaSink) and isinstance(score_cfg.source, KafkaPairSource)
    assert score_cfg.source.bootstrap_servers == cfg.sink.bootstrap_servers
    assert score_cfg.source.topic == cfg.sink.topic
    assert score_cfg.source.security == cfg.sink.security
    assert isinstance(score_cfg.sink, KafkaScoreSink)
    assert_files_mounted(scorer, score_cfg.source.security, score_cfg.sink.security)


def test_scorer_config_is_the_scorers_shape(helm_env: dict[str, str], tmp_path: Path) -> None:
    docs = documents(template(helm_env, CHART, *values_args("scorer-values.yaml")))
    scorer = container(docs, "rel-shadoweval-scorer")
    cfg = load_scorer(mounted_config(scorer, config_maps(docs), tmp_path), environ={})
    # scorer.config's own sections, and the proxy's sink as the source and sink's cluster.
    assert [s.label for s in cfg.scorers.default] == ["exact", "normalized", "token_f1"]
    assert cfg.judge.api_key_env == "JUDGE_API_KEY" and cfg.log_level == "warning"
    assert isinstance(cfg.source, KafkaPairSource) and isinstance(cfg.sink, KafkaScoreSink)
    assert cfg.source.group_id == "shadoweval-score-prod"
    assert (cfg.source.topic, cfg.sink.topic) == ("shadoweval.pairs", "shadoweval.scores")
    assert cfg.sink.bootstrap_servers == ["kafka-0.kafka:9093", "kafka-1.kafka:9093"]
    assert cfg.sink.security.sasl_password_file == "/etc/kafka-credentials/password"
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in scorer["env"]}
    assert env == {"JUDGE_API_KEY": {"name": "judge-credentials", "key": "api-key"}}

    # A sink on another cluster keeps its own security; topics follow the proxy's sink.
    docs = documents(
        template(
            helm_env,
            CHART,
            *values_args("scorer-values.yaml"),
            "--set",
            "config.sink.topic=team.pairs",
            "--set",
            "config.sink.scores_topic=team.scores",
            "--set-json",
            'scorer.config.sink={"kind": "kafka", "bootstrap_servers": ["other:9092"]}',
        )
    )
    scorer = container(docs, "rel-shadoweval-scorer")
    cfg = load_scorer(mounted_config(scorer, config_maps(docs), tmp_path), environ={})
    assert isinstance(cfg.source, KafkaPairSource) and isinstance(cfg.sink, KafkaScoreSink)
    assert (cfg.source.topic, cfg.sink.topic) == ("team.pairs", "team.scores")
    assert cfg.sink.bootstrap_servers == ["other:9092"]
    assert cfg.sink.security.protocol == "PLAINTEXT"
    assert cfg.source.security.protocol == "SASL_SSL"


def test_scorer_without_kafka_servers_fails_to_render(helm_env: dict[str, str]) -> None:
    done = helm(
        helm_env, "template", "rel", str(CHART), "--set", "scorer.enabled=true", check=False
    )
    assert done.returncode != 0
    assert "scorer.config.source is Kafka but has no bootstrap_servers" in done.stderr
    # A scorer's file source and sink need no servers (volumes from scorer.extraVolumes).
    files = helm(
        helm_env,
        "template",
        "rel",
        str(CHART),
        "--set",
        "scorer.enabled=true",
        "--set-json",
        'scorer.config={"source": {"kind": "file", "path": "/data/pairs.jsonl"}, '
        '"sink": {"kind": "file", "path": "/data/scores.jsonl"}}',
    )
    assert "path: /data/scores.jsonl" in files.stdout


def pod_specs(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d["spec"]["template"]["spec"] for d in docs if d["kind"] == "Deployment"]


def assert_locked_down(pod: dict[str, Any], containers: list[dict[str, Any]]) -> None:
    assert pod["securityContext"]["runAsNonRoot"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    for container in containers:
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        admin = next(p for p in container["ports"] if p["name"].endswith("admin"))
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": admin["name"]}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": admin["name"]}
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        # A read-only root filesystem: temporary files need a volume.
        assert "emptyDir" in volumes[mounts["/tmp"]]
        assert not container["image"].endswith(":latest")


@pytest.mark.parametrize("case", [c for c in CASES if c != "sidecar-values.yaml"])
def test_pods_run_locked_down(helm_env: dict[str, str], case: str) -> None:
    docs = documents(template(helm_env, CHART, *values_args(case)))
    for pod in pod_specs(docs):
        assert_locked_down(pod, pod["containers"])
        assert pod["automountServiceAccountToken"] is False


def test_candidate_credentials_come_from_secrets(helm_env: dict[str, str]) -> None:
    docs = documents(template(helm_env, CHART, *values_args("standalone-values.yaml")))
    (pod,) = pod_specs(docs)
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["CAND_A_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "cand-a-credentials",
        "key": "api-key",
    }
    missing = helm(
        helm_env,
        "template",
        "rel",
        str(CHART),
        *values_args("standalone-values.yaml"),
        "--set",
        "secretEnv=null",
        check=False,
    )
    assert missing.returncode != 0
    assert "api_key_env is CAND_A_API_KEY, but secretEnv has no entry" in missing.stderr


@pytest.mark.parametrize(
    ("setting", "error"),
    [
        ("mode=mirror", "mode"),
        ("replicas=3", "replicas"),
        ("config.listen.port=1", "listen"),
        ("config.log_level=verbose", "log_level"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("prometheusRule.forDurations.scorerLag=soon", "scorerLag"),
        ("proxy.port=70000", "port"),
        ("proxy.processes=0", "processes"),
        # Several relay processes hand their shadows to the one worker.
        ("proxy.processes=2,config.shadow_worker.enabled=false", "shadow_worker"),
        # The scorer's file is not the proxy's: proxy sections are not scorer keys.
        ("scorer.config.primary.url=http://vllm:8000", "primary"),
        ("scorer.config.source.kind=pulsar", "kind"),
        ("scorer.config.admin.port=1", "admin"),
    ],
)
def test_values_schema_rejects_bad_values(
    helm_env: dict[str, str], setting: str, error: str
) -> None:
    done = helm(helm_env, "template", "rel", str(CHART), "--set", setting, check=False)
    assert done.returncode != 0 and error in done.stderr, done.stderr


def test_values_schema_knows_every_config_section() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    sections = set(schema["properties"]["config"]["properties"])
    # listen and admin are the chart's: it sets them from proxy.port and proxy.adminPort.
    expected = set(Config.model_fields) - {"listen", "admin"}
    assert sections == expected, (
        "a config section was added or removed: list it under properties.config.properties "
        "in helm/shadoweval/values.schema.json, or chart users cannot set it"
    )


def test_values_schema_knows_every_scorer_config_section() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    scorer = schema["properties"]["scorer"]["properties"]["config"]
    assert scorer["additionalProperties"] is False
    # admin is the chart's: it sets it from scorer.adminPort.
    assert set(scorer["properties"]) == set(ScorerConfig.model_fields) - {"admin"}, (
        "a scorer config section was added or removed: list it under "
        "properties.scorer.properties.config.properties in helm/shadoweval/values.schema.json"
    )


def test_values_defaults_match_the_generators_and_the_package() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    alerts = load_script("prometheus/generate.py")
    assert values["prometheusRule"]["thresholds"] == alerts.THRESHOLDS
    assert values["prometheusRule"]["forDurations"] == alerts.FOR
    assert values["prometheusRule"]["runbookUrl"] == alerts.RUNBOOK
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == shadoweval.__version__


def rule_groups(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def test_prometheus_rule_is_the_rule_file(helm_env: dict[str, str], tmp_path: Path) -> None:
    docs = documents(template(helm_env, CHART, *values_args("monitoring-values.yaml")))
    plain = yaml.safe_load((ROOT / "prometheus" / "alerts.yaml").read_text())
    assert rule_groups(docs) == plain["groups"]

    custom = documents(
        template(
            helm_env,
            CHART,
            "--set",
            "prometheusRule.enabled=true",
            # --set would pass 2.5 as a string
            "--set-json",
            "prometheusRule.thresholds.candidateLatencyRatio=2.5",
            "--set",
            "prometheusRule.forDurations.scorerLag=1h",
            "--set",
            "prometheusRule.runbookUrl=https://runbooks.example.com/shadoweval",
        )
    )
    rules = {r["alert"]: r for r in rule_groups(custom)[0]["rules"]}
    assert "* 2.5)" in rules["ShadowevalCandidateLatencyHigh"]["expr"]
    assert "2.5 times" in rules["ShadowevalCandidateLatencyHigh"]["annotations"]["description"]
    assert rules["ShadowevalScorerLagHigh"]["for"] == "1h"
    assert (
        rules["ShadowevalSinkDropping"]["annotations"]["runbook_url"]
        == "https://runbooks.example.com/shadoweval#shadowevalsinkdropping"
    )
    rendered = tmp_path / "rules.yaml"
    rendered.write_text(yaml.safe_dump({"groups": rule_groups(custom)}))
    check = subprocess.run(
        [tool("promtool"), "check", "rules", str(rendered)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_dashboard_config_maps_carry_every_dashboard(helm_env: dict[str, str]) -> None:
    docs = documents(template(helm_env, CHART, *values_args("monitoring-values.yaml")))
    maps = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and "grafana_dashboard" in d["metadata"]["labels"]
    ]
    files = {p.name: p.read_text() for p in (ROOT / "grafana" / "dashboards").glob("*.json")}
    assert len(files) == 6
    carried = {}
    for cm in maps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["annotations"] == {"grafana_folder": "shadoweval"}
        assert len(cm["metadata"]["name"]) <= 63
        carried.update(cm["data"])
    assert {k: json.loads(v) for k, v in carried.items()} == {
        k: json.loads(v) for k, v in files.items()
    }
    elsewhere = documents(template(helm_env, CHART, *values_args("sidecar-monitoring-values.yaml")))
    assert {
        d["metadata"]["namespace"]
        for d in elsewhere
        if d["kind"] == "ConfigMap" and "grafana_dashboard" in d["metadata"]["labels"]
    } == {"monitoring"}


def test_monitors_scrape_the_admin_port(helm_env: dict[str, str]) -> None:
    docs = documents(template(helm_env, CHART, *values_args("sidecar-monitoring-values.yaml")))
    by_kind = {d["kind"]: d for d in docs}
    assert by_kind["PodMonitor"]["spec"]["podMetricsEndpoints"][0]["port"] == "shadow-admin"
    assert by_kind["PodMonitor"]["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "my-app"
    }
    # In sidecar mode the ServiceMonitor finds the scorer's Service, which names port admin.
    (service,) = [d for d in docs if d["kind"] == "Service"]
    assert service["metadata"]["name"] == "rel-shadoweval-scorer"
    assert [p["name"] for p in service["spec"]["ports"]] == ["admin"]
    selector = by_kind["ServiceMonitor"]["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    no_selector = helm(
        helm_env,
        "template",
        "rel",
        str(CHART),
        "--set",
        "mode=sidecar",
        "--set",
        "podMonitor.enabled=true",
        check=False,
    )
    assert no_selector.returncode != 0 and "podMonitor.selector" in no_selector.stderr


def test_reload_config_drops_the_checksum_so_a_config_change_rolls_nothing(
    helm_env: dict[str, str],
) -> None:
    def annotations(*args: str) -> dict[str, str]:
        docs = documents(template(helm_env, CHART, *args))
        (pod,) = [
            d["spec"]["template"]
            for d in docs
            if d["kind"] == "Deployment"
            and d["metadata"]["labels"]["app.kubernetes.io/component"] == "proxy"
        ]
        return pod["metadata"].get("annotations") or {}

    assert "checksum/config" in annotations()
    reloading = ["--set", "proxy.reloadConfig=true"]
    assert "checksum/config" not in annotations(*reloading)
    assert annotations(*reloading, "--set", "proxy.podAnnotations.team=evals") == {"team": "evals"}


def test_scorer_autoscaling_leaves_replicas_to_the_hpa(helm_env: dict[str, str]) -> None:
    docs = documents(template(helm_env, CHART, *values_args("scorer-hpa-values.yaml")))
    scorer = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-scorer")
    )
    assert "replicas" not in scorer["spec"]
    assert scorer["spec"]["template"]["spec"]["containers"][0]["args"][0] == "score"
    (hpa,) = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 12)
    fixed = documents(template(helm_env, CHART, *values_args("scorer-values.yaml")))
    scorer = next(
        d for d in fixed if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-scorer")
    )
    assert scorer["spec"]["replicas"] == 3


@pytest.fixture(scope="session")
def example_chart(helm_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example application chart with this chart as its (file://) dependency."""
    chart = tmp_path_factory.mktemp("example") / "app-with-sidecar"
    shutil.copytree(EXAMPLE, chart, ignore=shutil.ignore_patterns("charts", "Chart.lock"))
    text = (chart / "Chart.yaml").read_text().replace("file://../../shadoweval", f"file://{CHART}")
    (chart / "Chart.yaml").write_text(text)
    helm(helm_env, "dependency", "update", "--skip-refresh", str(chart))
    return chart


def test_sidecar_in_an_application_chart(helm_env: dict[str, str], example_chart: Path) -> None:
    helm(helm_env, "lint", "--strict", "--kube-version", KUBE_VERSION, str(example_chart))
    text = template(helm_env, example_chart)
    assert_valid(text)
    docs = documents(text)
    assert {d["kind"] for d in docs} == {"Deployment", "ConfigMap", "PodMonitor"}
    (pod,) = pod_specs(docs)
    app, sidecar = pod["containers"]
    assert app["env"][0] == {"name": "OPENAI_BASE_URL", "value": "http://127.0.0.1:8080/v1"}
    assert sidecar["name"] == "shadoweval"
    assert sidecar["image"] == f"ghcr.io/shadoweval/shadoweval:{shadoweval.__version__}"
    assert [p["name"] for p in sidecar["ports"]] == ["shadow-proxy", "shadow-admin"]
    assert_locked_down(pod, [sidecar])
    # The sidecar mounts the ConfigMap the subchart renders, and it listens on localhost only.
    (config_map,) = [d for d in docs if d["kind"] == "ConfigMap"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["shadow-config"]["configMap"]["name"] == config_map["metadata"]["name"]
    cfg = parse(yaml.safe_load(config_map["data"]["shadoweval.yaml"]), "example", environ={})
    assert cfg.listen.host == "127.0.0.1" and [c.name for c in cfg.candidates] == [
        "cand-a",
        "control",
    ]
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in sidecar["env"]}
    assert env == {"CAND_A_API_KEY": {"name": "cand-a-credentials", "key": "api-key"}}

    native = documents(template(helm_env, example_chart, "--set", "shadoweval.sidecar.native=true"))
    (pod,) = pod_specs(native)
    assert pod["containers"][1]["restartPolicy"] == "Always"


def test_notes_tell_how_to_reach_the_proxy(helm_env: dict[str, str], tmp_path: Path) -> None:
    """helm template does not render NOTES.txt: render it as a template of a copy."""
    chart = tmp_path / "shadoweval"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "_notes.tpl").write_text(
        '{{- define "notes" -}}\n' + notes + "\n{{- end }}\n"
    )
    (chart / "templates" / "notes.yaml").write_text(
        'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\ndata:\n  notes: |\n    {{- include "notes" . | nindent 4 }}\n'
    )

    def render(*args: str) -> str:
        out = template(helm_env, chart, "--show-only", "templates/notes.yaml", *args)
        return str(yaml.safe_load(out)["data"]["notes"])

    standalone = render(*values_args("monitoring-values.yaml"))
    assert "http://rel-shadoweval.prod.svc:8080/v1" in standalone
    assert "ServiceMonitor" in standalone and "PrometheusRule" in standalone
    sidecar = render(*values_args("sidecar-values.yaml"))
    assert '{{- include "shadoweval.sidecar" . | nindent 4 }}' in sidecar
    assert "http://127.0.0.1:8080/v1" in sidecar and "PodMonitor" in sidecar


def test_kubeconform_rejects_what_kubernetes_would(helm_env: dict[str, str]) -> None:
    """The vendored schemas are strict: a typo or a wrong type is caught, not skipped."""
    docs = documents(template(helm_env, CHART, *values_args("monitoring-values.yaml")))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    assert kubeconform(yaml.safe_dump(deployment)).returncode != 0
    deployment = next(d for d in documents(template(helm_env, CHART)) if d["kind"] == "Deployment")
    deployment["spec"]["replicas"] = "two"
    assert kubeconform(yaml.safe_dump(deployment)).returncode != 0
    monitor = next(d for d in docs if d["kind"] == "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["scrapeIntervall"] = "5s"
    assert kubeconform(yaml.safe_dump(monitor)).returncode != 0
    unknown = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "x"},
        "spec": {"containers": []},
    }
    assert kubeconform(yaml.safe_dump(unknown)).returncode != 0  # no schema vendored: an error
