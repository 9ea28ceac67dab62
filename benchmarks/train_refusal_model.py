"""Train the model-based refusal check on the refusal set's dev split, and only on it.

    .venv/bin/python benchmarks/train_refusal_model.py

A logistic classifier (L2-regularised, gradient descent in numpy) on the all-MiniLM-L6-v2
embedding of each answer's own voice (quotes and drafted text removed, as the patterns read
it). The threshold is chosen on out-of-fold probabilities of the dev split (5 folds): the
lowest that adds no false positive to what the patterns already flag on dev, among the
answers the model is asked about (``RefusalModel.wants``). Writes
shadoweval/score/detectors/refusal_model.json; the test and fresh splits are never read.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from shadoweval.score import embeddings
from shadoweval.score.detectors.evaluate import load
from shadoweval.score.detectors.refusal import RefusalDetector, own_voice
from shadoweval.score.detectors.refusal_model import MAX_CHARS, MODEL_FILE, RefusalModel

DEV = Path(__file__).parent / "detectors" / "refusal.dev.jsonl"
L2 = 1e-3
STEPS = 3000
RATE = 4.0
FOLDS = 5


def fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    w = np.zeros(x.shape[1])
    b = 0.0
    for _ in range(STEPS):
        p = 1.0 / (1.0 + np.exp(-(x @ w + b)))
        g = p - y
        w -= RATE * (x.T @ g / len(y) + L2 * w)
        b -= RATE * float(g.mean())
    return w, b


def main() -> int:
    items = load(DEV)
    texts = [own_voice(it.text)[:MAX_CHARS] for it in items]
    y = np.array([1.0 if it.label else 0.0 for it in items])
    enc = embeddings.LocalEncoder(embeddings.default_model_path(), max_tokens=128)
    x = enc.encode(texts).astype(np.float64)
    # out-of-fold probabilities for the threshold
    oof = np.zeros(len(items))
    folds = np.arange(len(items)) % FOLDS
    for k in range(FOLDS):
        w, b = fit(x[folds != k], y[folds != k])
        oof[folds == k] = 1.0 / (1.0 + np.exp(-(x[folds == k] @ w + b)))
    patterns = RefusalDetector()
    asked = [patterns(it.text).label is None and RefusalModel.wants(it.text) for it in items]
    neg = [oof[i] for i, it in enumerate(items) if asked[i] and not it.label]
    threshold = max(0.5, max(neg, default=0.0) + 1e-3)
    gained = sum(1 for i, it in enumerate(items) if asked[i] and it.label and oof[i] >= threshold)
    missed = sum(1 for i, it in enumerate(items) if it.label and patterns(it.text).label is None)
    w, b = fit(x, y)
    spec = {
        "about": "logistic classifier on all-MiniLM-L6-v2 embeddings; trained on "
        "benchmarks/detectors/refusal.dev.jsonl only (benchmarks/train_refusal_model.py)",
        "encoder": enc.name,
        "trained_on": {"split": "dev", "n": len(items), "positives": int(y.sum())},
        "threshold": round(float(threshold), 4),
        "bias": round(float(b), 6),
        "weights": [round(float(v), 6) for v in w],
    }
    MODEL_FILE.write_text(json.dumps(spec) + "\n", encoding="utf-8")
    print(
        f"threshold {threshold:.3f}; out of fold on dev, the model adds {gained} of the "
        f"{missed} refusals the patterns miss, with no false positive"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
