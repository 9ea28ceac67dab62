"""Redaction of personal data and secrets, applied before a record leaves the process."""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Callable
from typing import Any

from shadoweval.config.proxy import Redaction

# Order matters: whole blocks and key=value credentials first (their values may hold any
# other shape), card numbers before phone numbers, which could match parts of them.
# A leading look-ahead such as (?=\d) names the characters a match can start with: the
# engine then skips every other position before it evaluates a look-behind (2-3x faster).
_BUILTIN: dict[str, str] = {
    # PEM ("BEGIN RSA PRIVATE KEY", "BEGIN ENCRYPTED PRIVATE KEY", ...) and OpenSSH blocks,
    # header to footer; a block cut off before its footer is redacted to the next dashes.
    "private_key": (
        r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY( BLOCK)?-----(?:[^-]|-(?!----))*"
        r"(?:-----END[A-Z0-9 ]{0,40}PRIVATE KEY( BLOCK)?-----)?"
    ),
    # Cloud credentials named by their key: the AWS secret access key (40 characters, no
    # shape of its own) and Azure storage connection strings' AccountKey / SharedAccessKey.
    "cloud_secret": (
        r"(?P<k>(?i:\b(?:aws_?)?secret_?access_?key|\baws_?secret(?:_?key)?|\bAccountKey"
        r"|\bSharedAccessKey)[\"']?\s{0,3}[=:]\s{0,3}[\"']?)[A-Za-z0-9/+]{20,}={0,2}"
    ),
    # password=..., "passwd": "...", client_secret: ... (the key is kept, the value goes,
    # with its scheme: "secret: Bearer abc" loses "abc" too).
    "password": (
        r"(?P<k>(?i:\b(?:password|passwd|pwd|passphrase|client_secret|secret))[\"']?\s{0,3}"
        r"[=:]\s{0,3})(?:\"[^\"\n]{1,200}\"|'[^'\n]{1,200}'"
        r"|(?i:bearer\s+|basic\s+)?[^\s,;&\"'<>]{1,200})"
    ),
    # The local part may hold any RFC 5322 atext character ("*@x.io", "a{b}@x.io").
    "email": (
        r"(?<![\w.!#$%&'*+/=?^`{|}~-])[\w.!#$%&'*+/=?^`{|}~-]{1,64}"
        r"@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+"
    ),
    # Before the number rules: a digit-only local part is the address's, not a card's.
    # "jo [at] example [dot] com", "jo(at)example.com", "jo at example dot com"; the
    # replacer wants a bracketed "at", or a spelled-out one with a spelled-out dot and a
    # common top-level domain ("look at the dot product" is no address).
    "email_obfuscated": (
        r"[\w.+-]{1,64}\s{0,3}(?:[\[({](?i:at)[\])}]|\s(?i:at)\s)\s{0,3}[A-Za-z0-9-]{1,63}"
        r"(?:\s{0,3}(?:[\[({](?i:dot)[\])}]|\s(?i:dot)\s|\.)\s{0,3}[A-Za-z0-9-]{1,63}){1,4}"
    ),
    # IBAN: country, check digits, 11-30 letters or digits (groups of four); mod-97 checked.
    "iban": r"\b[A-Z]{2}\d\d(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b",
    # A run of digit groups (single space or dash between them); the replacer finds the
    # card-shaped, Luhn-valid numbers in it, so a neighbouring number cannot hide one.
    "credit_card": r"(?=\d)(?<!\d)(?=[\d .-]{13})\d+(?:[ .-]\d+)*",
    # US social security numbers: 123-45-6789 (no 000/666/9xx area, 00 group, 0000 serial).
    "ssn": r"\b(?!000|666|9\d\d)\d{3}([- ])(?!00)\d\d\1(?!0000)\d{4}\b",
    # UK National Insurance numbers: AB 12 34 56 C (HMRC's letter rules).
    "uk_nino": (
        r"\b(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
        r" ?\d\d ?\d\d ?\d\d ?[A-D]\b"
    ),
    # +CC and 00CC international numbers, (555) 123-4567, 555-123-4567 and national numbers
    # written in groups after a trunk 0 ("020 7946 0958", "(030) 1234567"); the replacer
    # wants 10 digits or more. Bare digit runs are not phones (phone_national, opt-in).
    "phone": (
        r"(?=[(+\d])(?:(?<![\w+])(?:\+|00(?=[1-9]))\d{1,3}[\s.-]?\(?\d{1,4}\)?(?:[\s.-]?\d{2,4}){2,4}"
        r"|\(\d{3}\)\s?\d{3}[\s.-]\d{4}|\b\d{3}[\s.-]\d{3}[\s.-]\d{4}"
        # National: the look-ahead wants 10 digits or more in the run, trunk 0 included.
        r"|(?<![\w.+-])(?=\(?0(?:[\s)-]{0,2}\d){9})"
        r"(?:\(0\d{1,4}\)[\s-]?\d{2,8}(?:[\s-]\d{2,8}){0,3}|0\d{1,4}(?:[\s-]\d{2,8}){1,4}))"
        r"(?![\d])"
    ),
    # Opt-in, noisy: a bare national number (a trunk 0 and 9-10 more digits, no separators),
    # which order ids and other identifiers also look like.
    "phone_national": r"(?=0)(?<![\w.+-])0\d{9,10}(?![\d])",
    "bearer_token": r"\b(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}",
    # "Basic dXNlcjpwYXNz" (HTTP basic credentials): the replacer wants base64 of "user:pass".
    "basic_auth": r"\b(?i:basic)[\s:]+[A-Za-z0-9+/]{3,}={0,2}",
    "api_key": (
        r"\b(?:sk-(?:proj-|ant-)?[A-Za-z0-9_-]{16,}|A(?:KI|SI)A[0-9A-Z]{16}"
        r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,}|glpat-[A-Za-z0-9_-]{20,}"
        r"|npm_[A-Za-z0-9]{36}|[sr]k_(?:live|test)_[A-Za-z0-9]{16,}"
        r"|xox[abposr]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}"
        r"|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,})"
    ),
    "ipv4": (
        r"(?=\d)(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}"
        r"(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\d.])"
    ),
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
_CARD_RUN = re.compile(r"\d[\d .-]{12}")
_PHONE_GROUPS = re.compile(r"\d\d\d[\s.-]\d\d\d[\s.-]\d{4}|0\d{0,4}[\s-]\d\d")
_BARE_NATIONAL = re.compile(r"0\d{9}")
_IPV4_RUN = re.compile(r"\d\.\d{1,3}\.\d{1,3}\.\d")
_IBAN_HINT = re.compile(r"[A-Z][A-Z]\d\d")
_SSN_RUN = re.compile(r"\d\d\d[- ]\d\d[- ]\d\d\d\d")
_NINO_HINT = re.compile(r"[A-Z][A-Z] ?\d\d ?\d\d ?\d\d ?[A-D]")
_SPELLED_AT = re.compile(r"\s(?i:at)\s")


def _key_prefix(t: str) -> bool:
    # Grouped by the separator each prefix holds: prose has no "_" or "-" and skips most
    # scans. GitHub tokens start with gh[pousr]_; "gh" alone is in every other sentence.
    if "_" in t and ("gh" in t or "_pat_" in t or "npm_" in t or "k_live_" in t or "k_test_" in t):
        return True
    if "-" in t and ("sk-" in t or "xox" in t or "glpat-" in t):
        return True
    return "AKIA" in t or "ASIA" in t or "AIza" in t or "eyJ" in t


def _password_hint(low: str) -> bool:
    return ("=" in low or ":" in low) and ("pass" in low or "pwd" in low or "secret" in low)


def _cloud_hint(low: str) -> bool:
    # Every cloud_secret match has its key name before a "=" or ":".
    return ("=" in low or ":" in low) and (
        "secret" in low or "accountkey" in low or "accesskey" in low
    )


def _obfuscated_at(t: str, low: str) -> bool:
    if ("[" in t or "(" in t or "{" in t) and ("[at]" in low or "(at)" in low or "{at}" in low):
        return True
    return "dot" in low and _SPELLED_AT.search(t) is not None


def _may_match_any(t: str, d: int, low: str) -> bool:
    """The built-in rules' conditions below in one test: False for most text, which then
    skips every built-in rule without a call per rule. (Card, phone and ID numbers need
    more digits than IPv4 addresses; an IBAN may hold just its two check digits.)"""
    return (
        d >= 4
        or "@" in t
        or "earer" in t
        or "EARER" in t
        or _key_prefix(t)
        or "PRIVATE KEY" in t
        or "basic" in low
        or _password_hint(low)
        or _cloud_hint(low)
        or _obfuscated_at(t, low)
        or (d >= 2 and _IBAN_HINT.search(t) is not None)
    )


# Cheap necessary conditions (substring counts run in C): most text matches no rule, and a
# regex scan costs ~100 ns per character, so a rule only runs when it could match.
# Each gets the text and its digit count (counted once per text).
# Each gets the text, its digit count and its lower-case copy (both computed once per text).
_CHECKS: dict[str, Callable[[str, int, str], bool]] = {
    "private_key": lambda t, d, low: "PRIVATE KEY" in t,
    "cloud_secret": lambda t, d, low: _cloud_hint(low),
    "password": lambda t, d, low: _password_hint(low),
    "email": lambda t, d, low: "@" in t,
    "iban": lambda t, d, low: d >= 2 and _IBAN_HINT.search(t) is not None,
    "credit_card": lambda t, d, low: d >= 13 and _CARD_RUN.search(t) is not None,
    "ssn": lambda t, d, low: d >= 9 and _SSN_RUN.search(t) is not None,
    "uk_nino": lambda t, d, low: d >= 6 and _NINO_HINT.search(t) is not None,
    # "+CC ...", "00CC ...", "(555) ...", "555-123-4567" or "020 7946 ...".
    "phone": lambda t, d, low: (
        d >= 9 and ("+" in t or "(" in t or "00" in t or _PHONE_GROUPS.search(t) is not None)
    ),
    "phone_national": lambda t, d, low: d >= 10 and _BARE_NATIONAL.search(t) is not None,
    "bearer_token": lambda t, d, low: "earer" in t or "EARER" in t,
    "basic_auth": lambda t, d, low: "basic" in low,
    "api_key": lambda t, d, low: _key_prefix(t),
    "email_obfuscated": lambda t, d, low: _obfuscated_at(t, low),
    "ipv4": lambda t, d, low: d >= 4 and t.count(".") >= 3 and _IPV4_RUN.search(t) is not None,
}


def _two_args(check: Callable[[str, int, str], bool]) -> Callable[[str, int], bool]:
    return lambda t, d: check(t, d, t.lower())


# The same checks given the text and its digit count only (the safety scorer's finder).
_MAY_MATCH: dict[str, Callable[[str, int], bool]] = {k: _two_args(f) for k, f in _CHECKS.items()}


class Redactor:
    """Compiled once from config; ``text`` and ``json`` are pure functions of their input."""

    def __init__(self, cfg: Redaction) -> None:
        # (cheap check or None, the rule applied to a whole text)
        self._rules: list[tuple[Callable[[str, int, str], bool] | None, Callable[[str], str]]] = []
        # The custom rules alone (they have no condition and always run).
        self._custom: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = []
        if not cfg.enabled:
            return
        for name in sorted(cfg.builtin, key=list(_BUILTIN).index):
            repl = f"[REDACTED:{name}]"
            replacer = _REPLACERS.get(name, _constant)(repl)
            pattern = re.compile(_BUILTIN[name])
            apply = (
                functools.partial(_sub_retrying, pattern, replacer)
                if name in _RETRYING
                else functools.partial(pattern.sub, replacer)
            )
            self._rules.append((_CHECKS[name], apply))
        for rule in cfg.custom:
            repl = rule.replacement if rule.replacement is not None else f"[REDACTED:{rule.name}]"
            custom = (re.compile(rule.pattern), _constant(repl))
            self._rules.append((None, functools.partial(custom[0].sub, custom[1])))
            self._custom.append(custom)

    @property
    def active(self) -> bool:
        return bool(self._rules)

    def text(self, value: str) -> str:
        if len(value) < 5:  # shorter than the shortest thing any built-in rule matches
            return self._custom_only(value) if self._custom else value
        digits = _digits(value)
        low = value.lower()
        if not _may_match_any(value, digits, low):
            return self._custom_only(value) if self._custom else value
        for may_match, apply in self._rules:
            if may_match is None or may_match(value, digits, low):
                value = apply(value)
        return value

    def _custom_only(self, value: str) -> str:
        for pattern, repl in self._custom:
            value = pattern.sub(repl, value)
        return value

    def json(self, value: Any) -> Any:
        """Redact every string inside a JSON-like value, object keys included (a caller
        chooses them too: ``{"jo@x.io": ...}``)."""
        if not self._rules:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            out: dict[Any, Any] = {}
            for k, v in value.items():
                key = self.text(k) if isinstance(k, str) else k
                while key in out:  # two keys redacted alike: both kept
                    key = f"{key}#"
                out[key] = self.json(v)
            return out
        if isinstance(value, list):
            return [self.json(v) for v in value]
        return value


# Rules whose replacer may turn a match down (it returns the match unchanged): the scan
# then goes on from the match's second character, not its end, so a rejected look-alike
# ("00 001" before a phone number) cannot swallow the start of a real one.
_RETRYING = frozenset({"phone", "iban", "basic_auth", "email_obfuscated"})


def _sub_retrying(pattern: re.Pattern[str], repl: Callable[[re.Match[str]], str], text: str) -> str:
    out: list[str] = []
    pos = kept = 0
    while (m := pattern.search(text, pos)) is not None:
        new = repl(m)
        if new == m.group(0):
            pos = m.start() + 1
            continue
        out += (text[kept : m.start()], new)
        kept = pos = max(m.end(), m.start() + 1)
    return "".join(out) + text[kept:] if out else text


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


def _keep_key_replacer(repl: str) -> Callable[[re.Match[str]], str]:
    # "password=hunter2" -> "password=[REDACTED:password]": the reader still sees what it was.
    return lambda m: m.group("k") + repl


_BASE64_TOKEN = re.compile(r"[A-Za-z0-9+/]+=*\Z")


def _basic_auth_replacer(repl: str) -> Callable[[re.Match[str]], str]:
    # "Basic" is an English word: only a token that decodes to "user:password" goes.
    def sub(m: re.Match[str]) -> str:
        text = m.group(0)
        token = _BASE64_TOKEN.search(text)
        if token is None:
            return text
        raw = token.group(0).rstrip("=")
        try:
            decoded = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
        except (binascii.Error, ValueError):
            return text
        if b":" not in decoded or not decoded.isascii() or not decoded.decode().isprintable():
            return text
        return repl

    return sub


def _iban_length(compact: str) -> int:
    """Length of the longest prefix of ``compact`` (no spaces) that passes ISO 13616's
    mod-97 check, or 0: one pass, each prefix's remainder from the one before."""
    head = compact[:4]
    if len(head) < 4 or not head[2:].isdigit():
        return 0
    # The check moves the first four characters to the end: their digits follow the rest.
    tail = "".join(str(int(c, 36)) for c in head)
    tail_value, tail_shift = int(tail) % 97, pow(10, len(tail), 97)
    rest = best = 0
    for n, c in enumerate(compact[4:34], start=5):
        value = int(c, 36)  # letters count as two digits (A = 10)
        rest = (rest * (100 if value > 9 else 10) + value) % 97
        if n >= 15 and (rest * tail_shift + tail_value) % 97 == 1:
            best = n
    return best


def _iban_replacer(repl: str) -> Callable[[re.Match[str]], str]:
    # The pattern may run on into a following word ("... 3000 THEN"): the longest prefix
    # that passes the mod-97 check is the IBAN.
    def sub(m: re.Match[str]) -> str:
        text = m.group(0)
        ends = [i + 1 for i, c in enumerate(text) if c != " "]
        length = _iban_length(text.replace(" ", ""))
        return repl + text[ends[length - 1] :] if length else text

    return sub


def _phone_replacer(repl: str) -> Callable[[re.Match[str]], str]:
    # A number after 00 or a trunk 0 has 10 digits or more with its prefix (the groups
    # decide where it ends, as after +): fewer is a date, a version or an id.
    def sub(m: re.Match[str]) -> str:
        text = m.group(0)
        if text.startswith(("0", "(0")) and _digits(text) < 10:
            return text
        return repl

    return sub


_AT_SEP = re.compile(r"\s{0,3}(?:([\[({])(?i:at)[\])}]|\s(?i:at)\s)\s{0,3}")
_DOT_SEP = re.compile(r"\s{0,3}(?:[\[({](?i:dot)[\])}]|\s(?i:dot)\s)\s{0,3}|\.")
_COMMON_TLDS = frozenset(
    [
        "com",
        "org",
        "net",
        "edu",
        "gov",
        "io",
        "ai",
        "co",
        "dev",
        "app",
        "me",
        "info",
        "biz",
        "us",
        "uk",
        "de",
        "fr",
        "nl",
        "es",
        "it",
        "ch",
        "at",
        "se",
        "no",
        "dk",
        "fi",
        "pl",
        "be",
        "ie",
        "ca",
        "au",
        "nz",
        "jp",
        "cn",
        "in",
        "br",
        "ru",
    ]
)


def _obfuscated_email_replacer(repl: str) -> Callable[[re.Match[str]], str]:
    def sub(m: re.Match[str]) -> str:
        text = m.group(0)
        at = _AT_SEP.search(text)
        if at is None:
            return text
        domain = text[at.end() :]
        seps = list(_DOT_SEP.finditer(domain))
        labels = [label.strip() for label in _DOT_SEP.split(domain)]
        # The longest run of labels that ends in a top-level domain: the match may run on
        # past the address ("jo [at] example [dot] com .0"), and what follows it is kept.
        for last in range(len(labels) - 1, 0, -1):
            tld = labels[last].lower()
            if not tld.isalpha() or not 2 <= len(tld) <= 24:
                continue
            if at.group(1) is None:  # "jo at example dot com": spelled out, so stricter
                spelled_dot = any(sep.group(0) != "." for sep in seps[:last])
                if not spelled_dot or tld not in _COMMON_TLDS:
                    continue
            end = at.end() + (seps[last].start() if last < len(seps) else len(domain))
            return repl + text[end:]
        return text

    return sub


_REPLACERS: dict[str, Callable[[str], Callable[[re.Match[str]], str]]] = {
    "email": _email_replacer,
    "credit_card": _card_replacer,
    "cloud_secret": _keep_key_replacer,
    "password": _keep_key_replacer,
    "basic_auth": _basic_auth_replacer,
    "iban": _iban_replacer,
    "phone": _phone_replacer,
    "email_obfuscated": _obfuscated_email_replacer,
}
