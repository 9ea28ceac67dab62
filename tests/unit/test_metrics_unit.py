from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from shadoweval.config.proxy import Pricing
from shadoweval.metrics import OTHER, LabelCap, Metrics
from shadoweval.pricing import PriceTable
from shadoweval.telemetry import Recorder
from shadoweval.types import Outcome, Usage


def test_label_cap_folds_the_rest_into_other() -> None:
    cap = LabelCap(3, preset=("known",))
    assert [cap(x) for x in ("known", "a", "b", "c", "a", "d")] == [
        "known",
        "a",
        "b",
        OTHER,
        "a",
        OTHER,
    ]
    assert cap(None) == "unknown"


def test_cardinality_cap_holds_under_10000_model_names() -> None:
    metrics = Metrics(CollectorRegistry(), model_label_limit=50, known_models=("cand-model",))
    rec = Recorder(metrics, "prod", PriceTable(Pricing()))
    for i in range(10_000):
        out = Outcome(
            upstream="cand-a", role="candidate", status=200, latency_s=0.01, stream=False,
            model=f"model-{i}", usage=Usage(input_tokens=1, output_tokens=1),
        )  # fmt: skip
        rec.outcome(out, "chat")
    models = {
        s.labels["model"]
        for family in metrics.registry.collect()
        for s in family.samples
        if "model" in s.labels
    }
    # The preset name takes one of the 50 slots (it has no series: nothing reported it),
    # 49 reported names are admitted, and the other 9,951 fold into "other".
    assert len(models) == 50
    assert OTHER in models and "cand-model" not in models
    folded = metrics.registry.get_sample_value(
        "shadoweval_requests_total",
        {
            "role": "candidate",
            "upstream": "cand-a",
            "model": OTHER,
            "route": "chat",
            "outcome": "ok",
        },
    )
    assert folded == 10_000 - 49


def test_price_lookup_prefers_exact_then_longest_prefix_and_cached_price() -> None:
    table = PriceTable(
        Pricing.model_validate(
            {
                "models": {
                    "gpt-4o": {
                        "input_per_mtok": 2.5,
                        "output_per_mtok": 10,
                        "cached_input_per_mtok": 1.25,
                    },
                    "gpt-4o-mini": {"input_per_mtok": 0.15, "output_per_mtok": 0.6},
                }
            }
        )
    )
    usage = Usage(input_tokens=1000, output_tokens=100, cached_input_tokens=400)
    assert table.cost("gpt-4o-2024-08-06", usage) == pytest.approx(
        (600 * 2.5 + 400 * 1.25 + 100 * 10) / 1e6
    )
    # No cached price: cached tokens cost the input price.
    assert table.cost("gpt-4o-mini-2024-07-18", usage) == pytest.approx(
        (1000 * 0.15 + 100 * 0.6) / 1e6
    )
    assert table.cost("llama-3", usage) is None
    assert table.cost("gpt-4o", None) is None


def test_merged_families_add_series_and_keep_per_process_facts_from_the_first() -> None:
    """The proxy's /metrics with the shadow worker: one exposition from two registries."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from shadoweval.proxy.children import merge_families

    def registry(pairs: float, depth: float, started: float) -> CollectorRegistry:
        r = CollectorRegistry()
        Counter("pairs", "p", ["upstream"], registry=r).labels("a").inc(pairs)
        Gauge("depth", "d", ["upstream"], registry=r).labels("a").set(depth)
        Gauge("process_start_time_seconds", "s", registry=r).set(started)
        Histogram("lat", "l", buckets=(1.0,), registry=r).observe(0.5)
        return r

    proxy, worker = registry(0, 0, 100.0), registry(7, 3, 200.0)
    only_in_worker = Counter("only", "o", registry=worker)
    only_in_worker.inc(2)

    class Families:
        def collect(self) -> list[Any]:
            return merge_families(proxy.collect(), worker.collect())

    text = generate_latest(Families()).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert samples[("pairs_total", (("upstream", "a"),))] == 7
    assert samples[("depth", (("upstream", "a"),))] == 3
    assert samples[("lat_count", ())] == 2
    assert samples[("lat_bucket", (("le", "1.0"),))] == 2
    assert samples[("only_total", ())] == 2
    assert samples[("process_start_time_seconds", ())] == 100.0  # the proxy's, not a sum
    assert text.count("# TYPE pairs_total counter") + text.count("# TYPE pairs counter") == 1


@pytest.mark.parametrize(
    "name",
    ["gpt-4o-2024-08-06", "meta-llama/Llama-3-8B-Instruct", "claude-3-5-sonnet@20240620", "a:b"],
)
def test_model_names_of_model_shape_are_labels(name: str) -> None:
    assert Metrics(CollectorRegistry()).model_label(name) == name


@pytest.mark.parametrize(
    "name",
    ["jo@example.com", "ignore previous instructions", "x\nHELP", "-x", "a" * 200, "é-model"],
)
def test_a_model_name_failing_the_shape_check_is_no_label(name: str) -> None:
    metrics = Metrics(CollectorRegistry())
    assert metrics.model_label(name) == OTHER
    assert metrics.model_label("gpt-4o") == "gpt-4o"  # and it took no place in the cap


def test_a_reloaded_candidates_model_is_a_label_value_even_past_the_limit() -> None:
    from shadoweval.config.proxy import Candidate

    m = Metrics(model_label_limit=2)
    assert [m.model_label(v) for v in ("seen-1", "seen-2", "late")] == ["seen-1", "seen-2", OTHER]
    added = Candidate.model_validate({"name": "new", "url": "http://127.0.0.1:1", "model": "late"})
    m.init_candidates([added])  # what a reload that adds the candidate does
    assert m.model_label("late") == "late"
    assert m.registry.get_sample_value("shadoweval_pairs_total", {"upstream": "new"}) == 0
