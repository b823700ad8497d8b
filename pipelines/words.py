"""Words in any script: the one segmentation behind word counts, the minimum-length rule, story terms and
near-copy shingles.

Text in scripts written with spaces (Latin, Cyrillic, Greek, Arabic, Hebrew, Devanagari, Hangul, ...) is
split at spaces; marks stay part of their word. Runs of scripts written without spaces go to ICU's word
break iterator (``icu4py``), which segments Chinese and Japanese with its CJK dictionary and Thai, Lao,
Khmer and Myanmar with theirs, whatever language a page declares. Spaceless scripts ICU has no dictionary
for (Javanese, Balinese, Tai Tham, ...) fall back to overlapping character pairs, so their text still yields
comparable units. Korean words carry their particles (서울시는, 서울시가); for story terms they are also
split into character pairs, as CJK search engines index Hangul.
"""

from __future__ import annotations

from functools import lru_cache

import regex
from icu4py.breakers import WordBreaker

from pipelines.text import scrub

_DICTIONARY_SCRIPTS = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}ー々〆ヶ"
_UNSEGMENTED_SCRIPTS = r"\p{Javanese}\p{Balinese}\p{Tai_Tham}\p{Tai_Le}\p{New_Tai_Lue}\p{Buginese}\p{Yi}"
_SPACELESS = regex.compile(f"[{_DICTIONARY_SCRIPTS}{_UNSEGMENTED_SCRIPTS}]")
_UNSEGMENTED_RUN = regex.compile(f"[{_UNSEGMENTED_SCRIPTS}\\p{{M}}]+")
_WORDLIKE = regex.compile(r"[\p{L}\p{N}]")
_HANGUL = regex.compile(r"\p{Hangul}")
# A story term: a number (with its sign, separators and percent) or a word of letters, marks and inner
# apostrophes or hyphens.
_TERM = regex.compile(r"\$?\d[\d.,]*\d%?|\$?\d%?|[^\W\d_][\w'’-]*")


def words(text: str) -> list[str]:
    """The words of ``text`` in order: space-separated chunks, with runs of spaceless scripts segmented."""
    if not _SPACELESS.search(text):  # most text: no chunk needs segmenting
        return text.split()
    out: list[str] = []
    for chunk in text.split():
        if _SPACELESS.search(chunk):
            out.extend(segment(chunk))
        else:
            out.append(chunk)
    return out


def segment(chunk: str) -> list[str]:
    """A chunk holding spaceless script: ICU's word segments that hold a letter or digit, with runs ICU has no
    dictionary for cut into character pairs."""
    out: list[str] = []
    for piece in _icu_words(chunk):
        if not _WORDLIKE.search(piece):
            continue
        run = _UNSEGMENTED_RUN.fullmatch(piece)
        out.extend(pairs(piece) if run else [piece])
    return out


@lru_cache(maxsize=65536)
def _icu_words(chunk: str) -> tuple[str, ...]:
    return tuple(WordBreaker(scrub(chunk), "und"))  # ICU takes UTF-8: no lone surrogates


def pairs(word: str) -> list[str]:
    """Overlapping pairs of characters (grapheme clusters: a letter with its marks); a word of one or two
    characters is itself."""
    chars = regex.findall(r"\X", word)
    return [word] if len(chars) < 3 else [chars[i] + chars[i + 1] for i in range(len(chars) - 1)]


def terms(text: str) -> list[str]:
    """Lower-case candidate story terms in order: numbers and words, spaceless runs segmented, Hangul
    words also as character pairs. Filtering (stopwords, length) is the caller's."""
    if not _SPACELESS.search(text) and not _HANGUL.search(text):  # most text: no term needs segmenting
        return [match.lower() for match in _TERM.findall(text)]
    out: list[str] = []
    for match in _TERM.finditer(text):
        token = match.group().lower()
        if _SPACELESS.search(token):
            out.extend(segment(token))
        elif _HANGUL.search(token):
            out.extend(pairs(token))
        else:
            out.append(token)
    return out


def is_spaceless(token: str) -> bool:
    """Whether a term is written in a script without spaces (so one character can be a word)."""
    return bool(_SPACELESS.search(token))
