"""Redaction of personal data and secrets, applied before a record leaves the process."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from shadoweval.config import Redaction

# Order matters: card numbers before phone numbers, which could match parts of them.
_BUILTIN: dict[str, str] = {
    # The local part may hold any RFC 5322 atext character ("*@x.io", "a{b}@x.io").
    "email": (
        r"(?<![\w.!#$%&'*+/=?^`{|}~-])[\w.!#$%&'*+/=?^`{|}~-]{1,64}"
        r"@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+"
    ),
    # A run of digit groups (single space or dash between them); the replacer finds the
    # card-shaped, Luhn-valid numbers in it, so a neighbouring number cannot hide one.
    "credit_card": r"(?<!\d)(?=[\d -]{13})\d+(?:[ -]\d+)*",
    # +CC international numbers, (555) 123-4567 and 555-123-4567; bare digit runs are not phones.
    "phone": (
        r"(?:(?<![\w+])\+\d{1,3}[\s.-]?\(?\d{1,4}\)?(?:[\s.-]?\d{2,4}){2,4}"
        r"|\(\d{3}\)\s?\d{3}[\s.-]\d{4}|\b\d{3}[\s.-]\d{3}[\s.-]\d{4})(?![\d])"
    ),
    "bearer_token": r"\b(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}",
    "api_key": (
        r"\b(?:sk-(?:proj-|ant-)?[A-Za-z0-9_-]{16,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}"
        r"|xox[abposr]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,})"
    ),
    "ipv4": r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\d.])",
}


def _luhn_ok(candidate: str) -> bool:
    digits = [int(c) for c in candidate if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


_DIGITS = b"0123456789"


def _digits(text: str) -> int:
    """ASCII digits in ``text``: one deletion pass over its UTF-8 bytes, where these bytes
    stand only for themselves (ten ``str.count`` calls cost ~5x more)."""
    data = text.encode("utf-8", "surrogatepass")
    return len(data) - len(data.translate(None, _DIGITS))


# Where a rule's pattern begins with a look-behind, the regex engine tries it at every
# position (~100-200 ns per character). These shorter patterns, without look-behinds, are
# found by a fast scan for their first character; each matches inside any match of its rule,
# so when it finds nothing the rule cannot match either.
_CARD_RUN = re.compile(r"\d[\d -]{12}")
_PHONE_GROUPS = re.compile(r"\d\d\d[\s.-]\d\d\d[\s.-]\d{4}")
_IPV4_RUN = re.compile(r"\d\.\d{1,3}\.\d{1,3}\.\d")


def _key_prefix(t: str) -> bool:
    # GitHub tokens start with gh[pousr]_; "gh" alone is in every other English sentence.
    return (
        "sk-" in t
        or "AKIA" in t
        or ("gh" in t and "_" in t)
        or "xox" in t
        or "AIza" in t
        or "eyJ" in t
    )


def _may_match_any(t: str, d: int) -> bool:
    """The built-in rules' conditions below in one test: False for most text, which then
    skips every built-in rule without a call per rule. (Credit cards and phone numbers need
    more digits than IPv4 addresses.)"""
    return d >= 4 or "@" in t or "earer" in t or "EARER" in t or _key_prefix(t)


# Cheap necessary conditions (substring counts run in C): most text matches no rule, and a
# regex scan costs ~100 ns per character, so a rule only runs when it could match.
# Each gets the text and its digit count (counted once per text).
_MAY_MATCH: dict[str, Callable[[str, int], bool]] = {
    "email": lambda t, d: "@" in t,
    "credit_card": lambda t, d: d >= 13 and _CARD_RUN.search(t) is not None,
    # "+CC ...", "(555) ..." or "555-123-4567".
    "phone": lambda t, d: d >= 9 and ("+" in t or "(" in t or _PHONE_GROUPS.search(t) is not None),
    "bearer_token": lambda t, d: "earer" in t or "EARER" in t,
    "api_key": lambda t, d: _key_prefix(t),
    "ipv4": lambda t, d: d >= 4 and t.count(".") >= 3 and _IPV4_RUN.search(t) is not None,
}


class Redactor:
    """Compiled once from config; ``text`` and ``json`` are pure functions of their input."""

    def __init__(self, cfg: Redaction) -> None:
        self._rules: list[
            tuple[
                Callable[[str, int], bool] | None,
                re.Pattern[str],
                Callable[[re.Match[str]], str],
            ]
        ] = []
        # The custom rules alone (they have no condition and always run).
        self._custom: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = []
        if not cfg.enabled:
            return
        for name in sorted(cfg.builtin, key=list(_BUILTIN).index):
            repl = f"[REDACTED:{name}]"
            replacer = _REPLACERS.get(name, _constant)(repl)
            self._rules.append((_MAY_MATCH[name], re.compile(_BUILTIN[name]), replacer))
        for rule in cfg.custom:
            repl = rule.replacement if rule.replacement is not None else f"[REDACTED:{rule.name}]"
            custom = (re.compile(rule.pattern), _constant(repl))
            self._rules.append((None, *custom))
            self._custom.append(custom)

    @property
    def active(self) -> bool:
        return bool(self._rules)

    def text(self, value: str) -> str:
        if len(value) < 5:  # shorter than the shortest thing any built-in rule matches
            return self._custom_only(value) if self._custom else value
        digits = _digits(value)
        if not _may_match_any(value, digits):
            return self._custom_only(value) if self._custom else value
        for may_match, pattern, repl in self._rules:
            if may_match is None or may_match(value, digits):
                value = pattern.sub(repl, value)
        return value

    def _custom_only(self, value: str) -> str:
        for pattern, repl in self._custom:
            value = pattern.sub(repl, value)
        return value

    def json(self, value: Any) -> Any:
        """Redact every string (keys excluded) inside a JSON-like value."""
        if not self._rules:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.json(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.json(v) for v in value]
        return value


def _constant(repl: str) -> Callable[[re.Match[str]], str]:
    return lambda _m: repl


def _email_replacer(repl: str) -> Callable[[re.Match[str]], str]:
    # "=", "'" and "/" are legal in an address but usually delimit it ("email=jo@x.io",
    # "'jo@x.io'"): what precedes the last of them is kept, unless nothing would follow.
    def sub(m: re.Match[str]) -> str:
        text = m.group(0)
        local = text[: text.index("@")]
        cut = max(local.rfind("="), local.rfind("'"), local.rfind("/")) + 1
        return text[:cut] + repl if 0 < cut < len(local) else repl

    return sub


_DIGIT_GROUP = re.compile(r"\d+")


def _card_shaped(lengths: tuple[int, ...]) -> bool:
    """13-19 digits written as one group, in groups of four, or as Amex (4-6-5) and
    Diners (4-6-4) print them."""
    if not 13 <= sum(lengths) <= 19:
        return False
    if len(lengths) == 1 or lengths in ((4, 6, 5), (4, 6, 4)):
        return True
    return all(n == 4 for n in lengths[:-1]) and lengths[-1] <= 4


def _card_replacer(repl: str) -> Callable[[re.Match[str]], str]:
    # Only Luhn-valid card-shaped numbers are cards; order ids and timestamps stay readable.
    def sub(m: re.Match[str]) -> str:
        text = m.group(0)
        spans = [g.span() for g in _DIGIT_GROUP.finditer(text)]
        if len(spans) == 1 and not 13 <= len(text) <= 19:
            return text  # the usual case: a number that is too short or too long
        out: list[str] = []
        kept = i = 0
        while i < len(spans):
            # The longest card starting at this group (at most 5 groups: 4-4-4-4-3).
            for j in range(min(i + 4, len(spans) - 1), i - 1, -1):
                lengths = tuple(end - start for start, end in spans[i : j + 1])
                window = text[spans[i][0] : spans[j][1]]
                if _card_shaped(lengths) and _luhn_ok(window):
                    out += (text[kept : spans[i][0]], repl)
                    kept, i = spans[j][1], j
                    break
            i += 1
        return "".join(out) + text[kept:] if out else text

    return sub


_REPLACERS: dict[str, Callable[[str], Callable[[re.Match[str]], str]]] = {
    "email": _email_replacer,
    "credit_card": _card_replacer,
}
