"""What a person (or a dedup hash) reads of a request: its turns as plain text."""

from __future__ import annotations

from typing import Any, TypedDict

from shadoweval.score.text import tokens

_SYSTEM_ROLES = frozenset({"system", "developer"})


class Turn(TypedDict):
    role: str
    text: str


def content_text(content: Any) -> str:
    """Message content as text: a string, or the text parts of a multi-part list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    parts.append(text)
                elif part.get("type") in ("image_url", "input_image"):
                    parts.append("[image]")
        return "\n".join(parts)
    if isinstance(content, dict):
        return content_text(content.get("content", content.get("text")))
    return ""


def turns(request: Any) -> list[Turn]:
    """The request's conversation in order: chat messages, a completions prompt, or a
    responses ``instructions`` + ``input``. Tool calls in assistant turns are summarised."""
    if not isinstance(request, dict):
        return []
    out: list[Turn] = []
    if isinstance(request.get("instructions"), str):
        out.append({"role": "system", "text": request["instructions"]})
    messages = request.get("messages")
    if not isinstance(messages, list):
        messages = request.get("input") if isinstance(request.get("input"), list) else None
    if isinstance(messages, list):
        for msg in messages:
            if isinstance(msg, str):
                out.append({"role": "user", "text": msg})
            elif isinstance(msg, dict):
                text = content_text(msg.get("content"))
                calls = msg.get("tool_calls")
                if isinstance(calls, list) and calls:
                    names = [
                        str((c.get("function") or {}).get("name", "?"))
                        for c in calls
                        if isinstance(c, dict)
                    ]
                    text = (text + "\n" if text else "") + f"[tool calls: {', '.join(names)}]"
                out.append({"role": str(msg.get("role") or "user"), "text": text})
        return out
    for key, role in (("prompt", "prompt"), ("input", "user")):
        value = request.get(key)
        if isinstance(value, str):
            out.append({"role": role, "text": value})
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            out.extend({"role": role, "text": v} for v in value)
    return out


def input_chars(conversation: list[Turn]) -> int:
    """Length of everything the model is given (system prompt included)."""
    return sum(len(t["text"]) for t in conversation)


def dedup_text(conversation: list[Turn]) -> str:
    """The part of an input that varies between requests: a shared system prompt would make
    every request of an application look alike, so it is left out."""
    return "\n".join(t["text"] for t in conversation if t["role"] not in _SYSTEM_ROLES)


def similarity(a: str, b: str) -> float:
    """Token F1 of two answers (normalised tokens; 1.0 = same words, 0.0 = none shared)."""
    ta, tb = tokens(a), tokens(b)
    if not ta and not tb:
        return 1.0
    if not ta or not tb:
        return 0.0
    counts: dict[str, int] = {}
    for tok in ta:
        counts[tok] = counts.get(tok, 0) + 1
    common = 0
    for tok in tb:
        if counts.get(tok, 0) > 0:
            counts[tok] -= 1
            common += 1
    return 2 * common / (len(ta) + len(tb))
