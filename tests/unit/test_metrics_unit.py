import pytest
from prometheus_client import CollectorRegistry

from shadoweval.config import Pricing
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
