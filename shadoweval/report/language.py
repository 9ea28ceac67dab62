"""A cheap guess of a request's language, for the report's ``--by language`` segments.

The script of the letters decides first (Han, kana, Hangul, Cyrillic, Arabic, Hebrew, Greek,
Devanagari, Thai); Latin-script text is told apart by its most frequent short words. It reads
the snippet of the caller's last turn the report keeps, costs microseconds, and needs no
model: a segment label, not a translation-grade classifier. Text with too few letters or
no known stopword (code, numbers, one word) is ``unknown``.
"""

from __future__ import annotations

import re
import unicodedata

UNKNOWN = "unknown"
# Enough stopword hits to name a Latin-script language, and its lead over the runner-up.
MIN_HITS = 2
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)

# The most frequent function words of each language, chosen to overlap little.
_STOPWORDS: dict[str, frozenset[str]] = {
    lang: frozenset(words.split())
    for lang, words in {
        "en": "the and is are was what how why which with this that you your for of to in "
        "it not be can do does my me have has will would should please from about",
        "de": "der die das und ist nicht ich sie wie was ein eine mit für auf dem den zu "
        "von bitte warum kann wird sind auch oder",
        "fr": "le la les et est une un des pour que qui dans pas je vous avec sur ce cette "
        "sont quoi comment pourquoi du au",
        "es": "el la los las y es una un que por para con del qué cómo está son en se lo "
        "mi tu por favor porque",
        "it": "il lo la gli le e è una un che per con del della sono non come perché mi "
        "questo questa di",
        "pt": "o a os as e é uma um que para com do da não como por você isso está são em no na",
        "nl": "de het een en is niet ik je wat hoe met voor van op dat dit zijn ook maar",
    }.items()
}
# Script of a letter (its Unicode name's first word) -> the language it names.
_SCRIPTS = {
    "HANGUL": "ko",
    "HIRAGANA": "ja",
    "KATAKANA": "ja",
    "CJK": "zh",
    "CYRILLIC": "ru",
    "ARABIC": "ar",
    "HEBREW": "he",
    "GREEK": "el",
    "DEVANAGARI": "hi",
    "THAI": "th",
}


# word -> the languages it is a stopword of (one lookup per word, not one per language)
_INDEX: dict[str, tuple[str, ...]] = {}
for _lang, _words in _STOPWORDS.items():
    for _w in _words:
        _INDEX[_w] = (*_INDEX.get(_w, ()), _lang)
_NON_LATIN = re.compile(r"[^\x00-\u02ff]")


def _script(ch: str) -> str | None:
    name = unicodedata.name(ch, "")
    return _SCRIPTS.get(name.split(" ", 1)[0]) if name else None


def detect(text: str) -> str:
    """An ISO 639-1 code, or ``unknown``."""
    words = _WORD.findall(text.lower())
    letters = sum(map(len, words))
    if letters < 3:
        return UNKNOWN
    if not text.isascii():
        counts: dict[str, int] = {}
        for ch in _NON_LATIN.findall(text):
            lang = _script(ch)
            if lang is not None:
                counts[lang] = counts.get(lang, 0) + 1
        if counts:
            lang, n = max(counts.items(), key=lambda kv: kv[1])
            if n * 2 >= letters:
                # Kana among Han characters is Japanese: Japanese writes both.
                return "ja" if lang == "zh" and counts.get("ja") else lang
    hits = dict.fromkeys(_STOPWORDS, 0)
    for word in words:
        for lang in _INDEX.get(word, ()):
            hits[lang] += 1
    ranked = sorted(hits.items(), key=lambda kv: -kv[1])
    (best, n), (_, runner_up) = ranked[0], ranked[1]
    return best if n >= MIN_HITS and n > runner_up else UNKNOWN
