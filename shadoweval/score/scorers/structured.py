"""Structured output: JSON validity, JSON-Schema conformance, tool-call agreement."""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from shadoweval.config.base import ConfigError
from shadoweval.score.base import (
    AnswerSide,
    Pair,
    Score,
    Scorer,
    ScorerContext,
    Scores,
    snippet,
    unscored,
)
from shadoweval.score.registry import scorer
from shadoweval.types import Json

Status = Literal["valid", "scalar", "fenced", "embedded", "truncated", "invalid", "empty"]

_FENCE = re.compile(r"```[ \t]*(?:json|JSON|json5)?[ \t]*\r?\n(.*?)\r?\n?[ \t]*```", re.S)
_MAX_STARTS = 20  # places tried for an embedded document: bounded work on long prose
_decoder = json.JSONDecoder()


@dataclass(frozen=True, slots=True)
class JsonReading:
    """How an answer relates to JSON, and the document if one could be read."""

    status: Status
    document: Any
    explanation: str
    found: bool  # a document (object/array, or scalar when allowed) was read


def _describe(doc: Any) -> str:
    if isinstance(doc, dict):
        return f"JSON object with {len(doc)} key{'' if len(doc) == 1 else 's'}"
    if isinstance(doc, list):
        return f"JSON array of {len(doc)} item{'' if len(doc) == 1 else 's'}"
    return f"JSON {type(doc).__name__}"


def read_json(text: str, *, allow_scalars: bool = False, limit: int = 40) -> JsonReading:
    """Classify an answer: strict JSON, JSON inside a code fence or prose, cut off, or not JSON.

    Strict means what ``json.loads`` of the whole answer (surrounding whitespace aside)
    accepts; "JSON with trailing text" is not strict, but the document is still extracted so
    a schema can be checked and the explanation says exactly what surrounds it.
    """
    s = text.strip()
    if not s:
        return JsonReading("empty", None, "empty answer, no JSON", False)
    try:
        doc = orjson.loads(s)
    except orjson.JSONDecodeError:
        pass
    else:
        if isinstance(doc, dict | list) or allow_scalars:
            return JsonReading("valid", doc, f"valid {_describe(doc)}", True)
        return JsonReading(
            "scalar",
            doc,
            f"valid JSON, but a bare {type(doc).__name__}, not an object or array",
            False,
        )

    fence = _FENCE.search(s)
    if fence is not None:
        inner = fence.group(1).strip()
        try:
            doc = orjson.loads(inner)
        except orjson.JSONDecodeError:
            pass
        else:
            before, after = s[: fence.start()].strip(), s[fence.end() :].strip()
            if not before and not after:
                return JsonReading(
                    "fenced",
                    doc,
                    f"{_describe(doc)} inside a markdown code fence; "
                    "a strict parser rejects the fence",
                    True,
                )
            return _embedded(doc, before, after, limit)

    first_error: str | None = None
    starts = [m.start() for m in re.finditer(r"[\[{]", s)][:_MAX_STARTS]
    for idx in starts:
        try:
            doc, end = _decoder.raw_decode(s, idx)
        except json.JSONDecodeError as exc:
            if first_error is None:
                first_error = f"{exc.msg} at character {exc.pos}"
                # The text ends inside the document: cut off (often finish_reason length).
                at_end = exc.pos >= len(s) or exc.msg.startswith("Unterminated string")
                if idx == 0 and at_end:
                    return JsonReading(
                        "truncated",
                        None,
                        f"JSON cut off after {len(s)} characters ({exc.msg} at the end)",
                        False,
                    )
            continue
        if isinstance(doc, dict | list) and (doc or end - idx > 2):
            return _embedded(doc, s[:idx].strip(), s[end:].strip(), limit)
    if first_error is not None and starts and starts[0] == 0:
        return JsonReading("invalid", None, f"not valid JSON: {first_error}", False)
    return JsonReading(
        "invalid", None, f"no JSON document in the answer: {snippet(s, limit)}", False
    )


def _embedded(doc: Any, before: str, after: str, limit: int) -> JsonReading:
    around = []
    if before:
        around.append(f"preceded by {len(before)} characters ({snippet(before, limit)})")
    if after:
        around.append(f"followed by {len(after)} characters ({snippet(after, limit)})")
    return JsonReading(
        "embedded",
        doc,
        f"{_describe(doc)} {' and '.join(around)}; a strict parser rejects the answer as a whole",
        True,
    )


def _reading(pair: Pair, side: AnswerSide, allow_scalars: bool, limit: int) -> JsonReading:
    key = ("json", side, allow_scalars)
    cached = pair.memo.get(key)
    if cached is None:
        cached = pair.memo[key] = read_json(
            pair.text(side) or "", allow_scalars=allow_scalars, limit=limit
        )
    return cached


@scorer("json_valid")
def json_valid(
    ctx: ScorerContext, *, lenient_value: float = 0.5, allow_scalars: bool = False
) -> Scorer:
    """Is each answer JSON? 1 = the answer parses as it stands; ``lenient_value`` = a document
    can be extracted (code fence, or prose before/after it); 0 = none (or cut off).

    Args:
        lenient_value: Credit for an extractable but not strictly valid answer.
        allow_scalars: Accept a bare string/number/boolean as valid.
    """
    if not 0.0 <= lenient_value <= 1.0:
        raise ValueError("lenient_value must be in [0, 1]")
    limit = ctx.config.snippet_chars
    values = {"valid": 1.0, "fenced": lenient_value, "embedded": lenient_value}

    def score(pair: Pair) -> Scores:
        out: Scores = []
        for side in ("primary", "candidate"):
            if (skip := unscored(pair, side, side=side)) is not None:
                out.extend(skip)
                continue
            r = _reading(pair, side, allow_scalars, limit)
            explanation = r.explanation
            if r.status == "truncated" and pair.side(side).get("finish_reason") == "length":
                explanation += "; the model hit its token limit (finish_reason length)"
            value = values.get(r.status, 0.0)
            out.append(
                Score(value, explanation, side=side, label=r.status, passed=r.status == "valid")
            )
        return out

    return score


def _error_path(path: Any) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


class _Validators:
    """jsonschema validators, built once per distinct schema (request schemas repeat)."""

    def __init__(self, size: int = 256) -> None:
        try:
            import jsonschema
        except ImportError as exc:  # the optional extra "score"
            raise ConfigError(
                "json_schema needs the jsonschema package: pip install 'shadoweval[score]'"
            ) from exc
        self._js = jsonschema
        self._cache: OrderedDict[bytes, Any] = OrderedDict()
        self._size = size

    def get(self, schema: Json) -> Any:
        key = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
        validator = self._cache.get(key)
        if validator is None:
            cls = self._js.validators.validator_for(schema)
            cls.check_schema(schema)  # SchemaError: the caller's schema is itself broken
            validator = self._cache[key] = cls(schema)
            if len(self._cache) > self._size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return validator


@scorer("json_schema")
def json_schema(
    ctx: ScorerContext,
    *,
    schema: Json | None = None,
    schema_file: str | None = None,
    lenient: bool = True,
    max_errors: int = 3,
) -> Scorer:
    """Does each answer's JSON conform to a JSON Schema? The schema is ``schema`` /
    ``schema_file``, else the one the request asked for (``response_format`` json_schema, or
    ``text.format`` for /v1/responses); with neither, the scorer does not apply.

    Args:
        schema: An inline JSON Schema.
        schema_file: A JSON or YAML file holding the schema.
        lenient: Validate a document extracted from a fence or prose (json_valid reports the
            format); false: an answer that is not strict JSON scores 0.
        max_errors: Violations listed in the details.
    """
    if schema is not None and schema_file is not None:
        raise ValueError("set schema or schema_file, not both")
    if schema_file is not None:
        import yaml

        try:
            schema = yaml.safe_load(Path(schema_file).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"schema_file {schema_file}: {exc}") from None
        if not isinstance(schema, dict):
            raise ValueError(f"schema_file {schema_file} does not hold a JSON Schema object")
    validators = _Validators()
    if schema is not None:
        try:
            validators.get(schema)
        except Exception as exc:
            raise ValueError(f"not a valid JSON Schema: {exc}") from None
    limit = ctx.config.snippet_chars

    def score(pair: Pair) -> Scores:
        used = schema if schema is not None else pair.response_format.get("schema")
        if used is None:
            return []
        origin = (
            "configured schema" if schema is not None else "the request's response_format schema"
        )
        try:
            validator = validators.get(used)
        except Exception as exc:
            return [Score(None, f"{origin} is not a valid JSON Schema: {exc}", label="bad_schema")]
        out: Scores = []
        for side in ("primary", "candidate"):
            if (skip := unscored(pair, side, side=side)) is not None:
                out.extend(skip)
                continue
            r = _reading(pair, side, True, limit)
            if not r.found or (not lenient and r.status != "valid"):
                why = f"nothing to validate against the {origin}: {r.explanation}"
                out.append(Score(0.0, why, side=side, label="no_json", passed=False))
                continue
            errors = sorted(validator.iter_errors(r.document), key=lambda e: list(e.absolute_path))
            extracted = "" if r.status == "valid" else f" (document extracted: {r.status})"
            if not errors:
                out.append(
                    Score(
                        1.0,
                        f"conforms to the {origin}{extracted}",
                        side=side,
                        label="conforms",
                        passed=True,
                    )
                )
                continue
            listed = [f"{_error_path(e.absolute_path)}: {e.message}" for e in errors[:max_errors]]
            out.append(
                Score(
                    0.0,
                    f"{len(errors)} violation(s) of the {origin}{extracted}; "
                    f"first: {listed[0][:200]}",
                    side=side,
                    label="violates",
                    passed=False,
                    details={"errors": listed, "error_count": len(errors)},
                )
            )
        return out

    return score


# -- tool calls ----------------------------------------------------------------------------


def _same(a: Any, b: Any, fold: bool) -> bool:
    """JSON equality where 1 == 1.0 but True != 1, and strings optionally case/space folded."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    if isinstance(a, str) and isinstance(b, str):
        return " ".join(a.split()).casefold() == " ".join(b.split()).casefold() if fold else a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k], fold) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y, fold) for x, y in zip(a, b, strict=True))
    return a is None and b is None


def _arguments(call: Json) -> tuple[Any, bool]:
    raw = call.get("arguments")
    if raw is None or raw == "":
        return {}, True
    if not isinstance(raw, str):
        return raw, True
    try:
        return orjson.loads(raw), True
    except orjson.JSONDecodeError:
        return raw, False


def _compare_call(p: Json, c: Json, fold: bool) -> tuple[float, Json]:
    """0 for a different function; else 0.5 for the name plus 0.5 x the share of argument
    keys (union of both) with equal values."""
    facts: Json = {"primary": p.get("name"), "candidate": c.get("name")}
    if p.get("name") != c.get("name"):
        facts["issue"] = "name"
        return 0.0, facts
    pa, p_ok = _arguments(p)
    ca, c_ok = _arguments(c)
    if not c_ok:
        facts["issue"] = "invalid_arguments"
        return 0.5, facts
    if not p_ok:
        facts["issue"] = "primary_invalid_arguments"
        return 0.5, facts
    if isinstance(pa, dict) and isinstance(ca, dict):
        keys = pa.keys() | ca.keys()
        differing = sorted(
            k for k in keys if k not in pa or k not in ca or not _same(pa[k], ca[k], fold)
        )
        share = 1.0 - len(differing) / len(keys) if keys else 1.0
        if differing:
            facts["issue"] = "arguments"
            facts["differing_keys"] = differing[:20]
        return 0.5 + 0.5 * share, facts
    if _same(pa, ca, fold):
        return 1.0, facts
    facts["issue"] = "arguments"
    return 0.5, facts


@scorer("tool_calls")
def tool_calls(ctx: ScorerContext, *, fold_strings: bool = False) -> Scorer:
    """Function-calling agreement: same functions called, with the same arguments.

    Calls are matched regardless of order. Each matched call scores 0.5 for the name plus 0.5
    times the share of argument keys whose values agree (1 == 1.0, key order irrelevant);
    the value is the sum over matches divided by the larger number of calls. Applies when
    either answer called a tool or the request offered tools.

    Args:
        fold_strings: Compare string arguments ignoring case and repeated whitespace.
    """

    def score(pair: Pair) -> Scores:
        pc, cc = pair.tool_calls("primary"), pair.tool_calls("candidate")
        if not pc and not cc and not pair.tools_offered:
            return []
        if (skip := unscored(pair, "primary", "candidate")) is not None:
            return skip
        if not pc and not cc:
            return [Score(1.0, "neither answer called a tool", label="no_calls", passed=True)]
        names = {"primary": [c.get("name") for c in pc], "candidate": [c.get("name") for c in cc]}
        if not cc:
            why = f"the primary called {names['primary']}, the candidate answered in text"
            return [Score(0.0, why, label="missing_call", passed=False, details={"names": names})]
        if not pc:
            why = f"the candidate called {names['candidate']}, the primary answered in text"
            return [Score(0.0, why, label="extra_call", passed=False, details={"names": names})]
        # Greedy best-first matching: few calls per answer, so all pairs are compared.
        options = sorted(
            (
                (*_compare_call(p, c, fold_strings), i, j)
                for i, p in enumerate(pc)
                for j, c in enumerate(cc)
            ),
            key=lambda t: -t[0],
        )
        used_p: set[int] = set()
        used_c: set[int] = set()
        matched: list[Json] = []
        total = 0.0
        for value, facts, i, j in options:
            if i in used_p or j in used_c or value == 0.0:
                continue
            used_p.add(i)
            used_c.add(j)
            total += value
            matched.append({"score": round(value, 4), **facts})
        value = total / max(len(pc), len(cc))
        issues = [m["issue"] for m in matched if "issue" in m]
        if value == 1.0:
            label, why = (
                "match",
                f"same {len(pc)} call(s) with the same arguments: {names['primary']}",
            )
        elif not matched:
            label, why = (
                "name_mismatch",
                f"different functions: primary {names['primary']}, candidate {names['candidate']}",
            )
        elif len(pc) != len(cc) or len(matched) < len(pc):
            label = "count_mismatch" if len(pc) != len(cc) else "name_mismatch"
            why = f"calls differ: primary {names['primary']}, candidate {names['candidate']}"
        elif "invalid_arguments" in issues:
            label, why = "invalid_arguments", "the candidate's arguments are not valid JSON"
        else:
            keys = sorted({k for m in matched for k in m.get("differing_keys", [])})
            label, why = "args_mismatch", f"same functions, arguments differ in {keys or 'value'}"
        return [
            Score(
                value,
                why,
                label=label,
                passed=value == 1.0,
                details={"names": names, "matched": matched},
            )
        ]

    return score
