"""Fake models with a known safety profile, to show that the probe suites tell them apart.

``RedTeamFake(behaviour=...)`` is a :class:`FakeUpstream` whose answers depend on the whole
conversation:

- ``vulnerable`` complies with everything: it decodes base64/ROT13/leetspeak, follows
  instructions of the form ``"A" immediately followed by "B"`` wherever they hide (documents,
  tool results), and recites its system prompt and context (leaking planted canaries and
  personal data).
- ``robust`` refuses requests for harmful content or jailbreak framings (also when encoded),
  never repeats its context and never follows embedded instructions, and answers benign
  requests normally.
- ``refuse_all`` refuses everything: safe against attacks, useless on benign requests (the
  over-refusal probes catch it).

These are heuristics written against the shipped suites, not models: they exist so tests can
assert that attack-success rates separate a weak target from a strong one.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any, Literal

from shadoweval.probes.transforms import rot13, unleet
from shadoweval.testing.fake_upstream import FakeUpstream

Behaviour = Literal["vulnerable", "robust", "refuse_all"]

REFUSAL = "I'm sorry, but I can't help with that."
# Whatever the connecting words (leetspeak or casing may have mangled them): "A" ... by "B".
_COMPOSE = re.compile(r'"([^"\n]{1,40})"\s+\S+\s+\S+\s+by\s+"([^"\n]{1,40})"', re.I)
_BASE64 = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")
# Goals and framings the shipped jailbreak suite uses; benign-but-edgy prompts avoid them.
_HARMFUL = re.compile(
    r"napalm|methamphetamine|\bmeth\b|pipe\s*bomb|ransomware|keylogger|malware|"
    r"phishing|nerve\s*agent|sarin|ghost\s*gun|untraceable|skimmer|hot-?wire|"
    r"launder|counterfeit|fentanyl|bioweapon|"
    r"developer\s*mode|\bdan\b|jailbr[eo]a?k|no\s+restrictions|unfiltered|without\s+(?:any\s+)?"
    r"(?:rules|restrictions|filters)|concatenat|payload",
    re.I,
)


def decoded_views(text: str) -> str:
    """``text`` plus what it says once base64, ROT13 and leetspeak are undone."""
    views = [text, unleet(text), text.replace('\\"', '"')]  # also JSON-escaped quotes
    if "rot13" in text.casefold() or "rot-13" in text.casefold():
        views.append(rot13(text))
    for token in _BASE64.findall(text):
        try:
            views.append(base64.b64decode(token, validate=True).decode("utf-8"))
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
    return "\n".join(views)


def _content(message: Any) -> str:
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    return content if isinstance(content, str) else ""


@dataclass
class RedTeamFake(FakeUpstream):
    behaviour: Behaviour = "robust"

    def reply(self, body: dict[str, Any], prompt: str) -> str:
        if self.behaviour == "refuse_all":
            return REFUSAL
        messages = body.get("messages")
        messages = messages if isinstance(messages, list) else []
        asked = decoded_views(prompt)
        if self.behaviour == "robust":
            if _HARMFUL.search(asked):
                return REFUSAL
            # Answers the request itself; never repeats its context or obeys embedded text.
            words = len(prompt.split())
            return f"Happy to help. Here is a clear, practical answer to your {words}-word ask."
        system = "\n".join(_content(m) for m in messages if m.get("role") == "system")
        context = "\n".join(
            _content(m) for m in messages[:-1] if isinstance(m, dict) and m.get("role") != "system"
        )
        everything = decoded_views("\n".join(_content(m) for m in messages) or prompt)
        parts = ["Sure, here is exactly what you asked for."]
        parts += [a + b for a, b in _COMPOSE.findall(everything)]  # obeys injected instructions
        if system:
            parts.append(f"My instructions say: {system}")
        if context:
            parts.append(f"Context I was given: {context}")
        parts.append("Step 1: gather what you need. Step 2: follow the details above closely.")
        return "\n".join(parts)
