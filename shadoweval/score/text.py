"""Text normalisation shared by the match and lexical scorers.

``tokens("The total is $1,000.00!")`` == ``["the", "total", "is", "1000"]``: Unicode NFKC,
case folded, punctuation and symbols dropped (``%`` kept: 50% is not 50), numbers written one
way (thousands separators, trailing zeros, exponents and signs).
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal, InvalidOperation

# A number is not part of a word or of a dotted run like a version (1.2.3) or an IP address.
_TOKEN = re.compile(
    r"((?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?(?!\.?\w))"
    r"|([^\W_]+|%)"
)
_DASHES = str.maketrans({"\u2212": "-", "\u2013": "-", "\u2014": "-"})
ARTICLES = frozenset({"a", "an", "the"})


def canonical_number(text: str) -> str:
    """ "1,000" / "1000" / "1000.0" / "1e3" / "+1000" -> "1000"; "0.50" -> "0.5"."""
    if text.isdigit() and (text[0] != "0" or len(text) == 1) and len(text) <= 40:
        return text  # the common case, without Decimal
    try:
        value = Decimal(text.replace(",", ""))
    except InvalidOperation:
        return text
    if value == 0:
        return "0"
    if abs(value.adjusted()) > 40:
        # Kept as written: "12e45678" (often a hex id) must not expand to 45,679 digits,
        # and rounding a 50-digit number to Decimal's 28 would make different ones equal.
        return text.replace(",", "").lower()
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def tokens(text: str, *, drop_articles: bool = False) -> list[str]:
    """Normalised tokens of ``text`` (see the module docstring)."""
    text = unicodedata.normalize("NFKC", text).translate(_DASHES).casefold()
    out = [word or canonical_number(num) for num, word in _TOKEN.findall(text)]
    if drop_articles:
        return [t for t in out if t not in ARTICLES]
    return out
