"""Article text -> the signals the stories stage compares.

- ``terms``: a sparse, L2-normalised vector of the article's salient terms. A term's weight is its
  log term frequency (title terms counted extra) times its rarity in general language, from
  wordfreq's open-data frequencies: rare shared terms (names, figures such as "14.3", "49%") carry a
  story, common words do not. Only the top ``MAX_TERMS`` terms are kept, which bounds memory and cost.
- ``minhash``: a MinHash signature of the article's 5-word shingles, to find near-identical copies.

Words and terms come from ``pipelines.words``, so every script is segmented the same way everywhere.
- ``content_hash``: equal for exact copies (see ``pipelines.text.normalise``).
"""

from __future__ import annotations

import hashlib
import math
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import datetime
from functools import lru_cache
from operator import mul

import numpy as np
import regex

from pipelines.figures import Figure
from pipelines.text import normalise
from pipelines.words import is_spaceless, terms, words

MAX_TERMS = 60
TITLE_BOOST = 2
SHINGLE = 5
NUM_PERM = 64
SIGNATURE_DTYPE = np.dtype("<u4")
WEIGHT_DTYPE = np.dtype("<f8")

_STOP = frozenset("""
a an the and or but if of to in on at by for with from as is are was were be been being it its this that
these those he she they we you i his her their our your my me him them us not no so than then there here
what which who whom whose when where why how all any both each few more most other some such only own same
too very can will just should now also said says say would could may might must has have had do does did
into about over after before under again further once during while up down out off new one two mr ms mrs
""".split())


@dataclass(frozen=True)
class ArticleFeatures:
    article_id: str
    source: str
    title: str | None
    time: datetime  # published_at, else the run's start (a stand-in for fetch time)
    content_hash: str
    terms: tuple[str, ...]  # the article's strongest terms, by weight descending (then term)
    weights: bytes  # their weights, L2 norm 1, as little-endian float64 (60 float objects and pairs would
    minhash: bytes  # take 5 KB an article in the story step, which holds a run's features); see ``minhash``
    dated: bool = True  # ``time`` is a publication date, not a fetch time
    url: str = ""  # the entry's link and feed: what a failure to assign the article rejects
    feed_url: str | None = None
    figures: tuple[Figure, ...] = ()  # what the story's versions are compared on (``stories.agreement``)

    def vector(self) -> list[tuple[str, float]]:
        """The (term, weight) pairs, strongest first."""
        return list(zip(self.terms, np.frombuffer(self.weights, WEIGHT_DTYPE).tolist(), strict=True))

    def __reduce__(self):
        # a run's features are held together by the story step, and most terms recur across its articles:
        # unpickled (moved between stages or workers), the terms are interned, so each is held once
        return _unpickled, tuple(getattr(self, f.name) for f in fields(self))


def _unpickled(*values) -> ArticleFeatures:
    features = ArticleFeatures(*values)
    object.__setattr__(features, "terms", tuple(map(sys.intern, features.terms)))
    return features


def tokens(text: str) -> list[str]:
    """The article's terms (``pipelines.words.terms``) without stopwords and one-letter words."""
    out = []
    for term in terms(text):
        tok = term.replace("’", "'").strip("'-").lstrip("$").replace(",", "")
        if tok.endswith("'s"):
            tok = tok[:-2]
        if (len(tok) > 1 or (tok and is_spaceless(tok))) and tok not in _STOP:
            out.append(tok)
    return out


# wordfreq is imported where it is first used, like trafilatura in ``pipelines.extract``: a run that finds
# nothing new (most scheduled runs) never needs it, and importing it takes a tenth of a second.


@lru_cache(maxsize=4)
def _languages() -> frozenset[str]:
    from wordfreq import available_languages

    return frozenset(available_languages())


# wordfreq looks words of these languages up through MeCab or jieba, which newsbeam does not install: their
# terms (already segmented by ICU) are looked up in the frequency list directly.
_SEGMENTED_LISTS = frozenset({"zh", "ja", "ko"})


@lru_cache(maxsize=200_000)
def rarity(term: str, language: str = "en") -> float:
    """How unexpected a term is in general text: 8 minus its Zipf frequency, at least 0.5.

    For a language wordfreq has no list for (Thai, Khmer, Lao, Burmese, ...), its length in characters
    stands in, capped at 8: frequent words are short (Zipf's law of abbreviation), and without it the
    function words of unrelated articles (Thai การ, ใน, ที่) would weigh as much as their names.
    """
    if language not in _languages():
        return max(0.5, min(8.0, float(len(regex.findall(r"\X", term)))))
    if language in _SEGMENTED_LISTS:
        frequency = _listed_frequency(term, language)
        zipf = math.log10(frequency) + 9.0 if frequency > 0 else 0.0
    else:
        from wordfreq import zipf_frequency

        zipf = zipf_frequency(term, language)
    return max(0.5, 8.0 - zipf)


def _listed_frequency(term: str, language: str) -> float:
    """A term's frequency in wordfreq's list for a language it segments with MeCab or jieba. A term ICU cut
    differently (した where the list has し and た) is estimated from its characters as wordfreq combines the
    tokens of a phrase: the harmonic combination of their frequencies, divided by 10 per inferred break."""
    from wordfreq import get_frequency_dict

    frequencies = get_frequency_dict(language)
    if term in frequencies:
        return frequencies[term]
    pieces = regex.findall(r"\X", term)
    if len(pieces) < 2 or any(p not in frequencies for p in pieces):
        return 0.0
    return 1.0 / sum(1.0 / frequencies[p] for p in pieces) / 10.0 ** (len(pieces) - 1)


def term_vector(title: str | None, text: str, language: str | None = None) -> dict[str, float]:
    tf = Counter(tokens(text))
    for tok in tokens(title or ""):
        tf[tok] += TITLE_BOOST
    lang = language or "en"
    weights = {t: (1.0 + math.log(c)) * rarity(t, lang) for t, c in tf.items()}
    top = sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_TERMS]
    norm = math.sqrt(sum(w * w for _, w in top)) or 1.0
    return {t: w / norm for t, w in top}


def cosine(a: dict[str, float], b: dict[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    shared = [t for t in a if t in b]  # in a's order: the same sum, to the last bit, as over all of a's terms
    return sum(map(mul, map(a.__getitem__, shared), map(b.__getitem__, shared)))


# Fixed seeds: signatures must agree across workers and runs.
_RNG = np.random.default_rng(20250613)
_A = _RNG.integers(1, 2**63, NUM_PERM, dtype=np.uint64) | np.uint64(1)
_B = _RNG.integers(0, 2**63, NUM_PERM, dtype=np.uint64)


def minhash(text: str) -> bytes:
    """MinHash of word 5-shingles; 64 multiply-shift hash functions over a 64-bit shingle hash. Each value
    fits 32 bits; the signature is their little-endian bytes (256 bytes; as Python ints it would take 2.6 KB,
    and the story index holds one per article of the window)."""
    units = words(normalise(text))
    shingles = {" ".join(units[i:i + SHINGLE]) for i in range(max(1, len(units) - SHINGLE + 1))}
    hashes = np.fromiter(
        (int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little") for s in shingles),
        dtype=np.uint64, count=len(shingles))
    with np.errstate(over="ignore"):
        permuted = (hashes[:, None] * _A[None, :] + _B[None, :]) >> np.uint64(32)
    return permuted.min(axis=0).astype(SIGNATURE_DTYPE).tobytes()


def signature(values: Iterable[int]) -> bytes:
    """A MinHash signature from its values (a snapshot's list, a test's)."""
    return np.array(list(values), dtype=SIGNATURE_DTYPE).tobytes()


def signature_values(minhash: bytes) -> list[int]:
    return np.frombuffer(minhash, dtype=SIGNATURE_DTYPE).tolist()


def jaccard(a: bytes, b: bytes) -> float:
    """Estimated Jaccard similarity of the shingle sets behind two signatures."""
    if len(a) != len(b):
        raise ValueError("signatures of different lengths")
    x, y = np.frombuffer(a, dtype=SIGNATURE_DTYPE), np.frombuffer(b, dtype=SIGNATURE_DTYPE)
    return int(np.count_nonzero(x == y)) / len(x)


def article_features(article_id: str, source: str, title: str | None, text: str, language: str | None,
                     time: datetime, content_hash: str, dated: bool = True, url: str = "",
                     feed_url: str | None = None, figures: tuple[Figure, ...] = ()) -> ArticleFeatures:
    terms, weights = packed_terms(term_vector(title, text, language))
    return ArticleFeatures(
        article_id=article_id, source=source, title=title, time=time, content_hash=content_hash,
        terms=terms, weights=weights, minhash=minhash(text), dated=dated, url=url, feed_url=feed_url,
        figures=figures,
    )


def packed_terms(vector: dict[str, float]) -> tuple[tuple[str, ...], bytes]:
    """A term vector as ``ArticleFeatures`` holds it: its terms by weight descending (then term), and their
    weights packed."""
    pairs = sorted(vector.items(), key=lambda kv: (-kv[1], kv[0]))
    return tuple(t for t, _ in pairs), np.array([w for _, w in pairs], WEIGHT_DTYPE).tobytes()
