"""Text analysis for lexical matching: words, stop words and Snowball stemming.

Used by the BM25 index and by answer composition, so both see the same terms.
"""

from __future__ import annotations

import re
import threading

import Stemmer

STOP_WORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is
    it its itself just me more most my myself no nor not now of off on once only or other our
    ours ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself
    yourselves according said says say tell told many much get got give given make made us
    """.split()
)
_WORD_RE = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)
_local = threading.local()  # Snowball stemmers are not thread-safe: one per thread.


def words(text: str) -> list[str]:
    """Lower-cased words, possessive endings dropped."""
    out = []
    for w in _WORD_RE.findall(text.lower()):
        if w.endswith(("'s", "’s")):
            w = w[:-2]
        out.append(w)
    return out


def _stemmer() -> Stemmer.Stemmer:
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = Stemmer.Stemmer("english")
    return stemmer


def stem(word: str) -> str:
    return _stemmer().stemWord(word)


def analyze(text: str) -> list[str]:
    """Stemmed words of `text` that are not stop words, in order."""
    kept = [w for w in words(text) if w not in STOP_WORDS]
    return _stemmer().stemWords(kept) if kept else []
