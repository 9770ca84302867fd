"""Question types and typed spans: what kind of answer a factoid question expects (a date, a
number, an amount of money, a percentage, a name, a place), and where such spans are in a
sentence. Regular expressions and capitalisation only: no model, microseconds per sentence.

Pure functions; used by answer composition to prefer sentences that hold an answer of the
expected type and to cut a short answer out of the best sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

DATE = "date"
NUMBER = "number"
MONEY = "money"
PERCENT = "percent"
QUANTITY = "quantity"  # a number with a unit: how long, how far, how tall, ...
NAME = "name"  # a person, organisation or thing named with capitals
PLACE = "place"

_MONTH = (
    r"(?:January|February|March|April|May|June|July|August|September|October|November|"
    r"December|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept?|Oct|Nov|Dec)\.?"
)
_WEEKDAY = r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_NUMBER_WORD = (
    r"(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|"
    r"fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|"
    r"eighty|ninety|hundred|thousand|dozen|dozens|hundreds|thousands|millions|half)"
)
_SCALE = r"(?:\s+(?:million|billion|trillion|thousand|hundred))?"
_NUM = rf"(?:\d[\d,]*(?:\.\d+)?|\.\d+){_SCALE}"
# "over two million", "more than 37": the hedge is part of the answer
_HEDGE = (
    r"(?:(?:over|about|around|nearly|almost|approximately|roughly|some|more\s+than|"
    r"less\s+than|fewer\s+than|up\s+to|at\s+least)\s+)?"
)
_NUM_OR_WORD = rf"(?:{_NUM}|{_NUMBER_WORD}(?:[\s-]+{_NUMBER_WORD})*{_SCALE})"
_CURRENCY_WORD = (
    r"(?:dollars?|won|euros?|pounds?|yen|yuan|rubles?|roubles?|francs?|marks?|rupees?|"
    r"USD|EUR|GBP|KRW)"
)
_UNIT = (
    r"(?:years?|months?|weeks?|days?|hours?|minutes?|seconds?|decades?|centuries|century|"
    r"miles?|kilometers?|kilometres?|km|meters?|metres?|m|feet|foot|ft|inches?|yards?|"
    r"acres?|hectares?|square\s+\w+|tons?|tonnes?|pounds?|lbs?|kilograms?|kg|grams?|"
    r"degrees?|°[CF]?|mph|km/h|percent|people|residents|students|members|employees)"
)

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    (
        MONEY,
        re.compile(
            rf"(?:[$€£¥₩]|US\$|USD\s?|KRW\s?)\s?{_NUM}|{_NUM_OR_WORD}\s+{_CURRENCY_WORD}\b",
            re.IGNORECASE,
        ),
    ),
    (PERCENT, re.compile(rf"{_NUM_OR_WORD}\s?(?:%|percent\b|per\s+cent\b)", re.IGNORECASE)),
    (
        DATE,
        re.compile(
            rf"\b(?:{_WEEKDAY},?\s+)?(?:{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?(?!\d)(?:,?\s+\d{{4}})?"
            rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}(?:,?\s+\d{{4}})?"
            rf"|(?:early\s+|late\s+|mid-?)?{_MONTH}(?:,?\s+\d{{4}})?(?![\w-])"
            rf"|(?:the\s+)?(?:early\s+|late\s+|mid-?)?(?:1[0-9]|20)\d{{2}}s?(?:[–-]\d{{2,4}}\b)?\b"
            rf"|{_WEEKDAY}\b"
            rf"|(?:the\s+)?\d{{1,2}}(?:st|nd|rd|th)\s+century\b"
            rf"|(?:next|last|this|previous|coming)\s+(?:year|month|week|decade|spring|summer|"
            rf"autumn|fall|winter)\b)",
        ),
    ),
    (
        QUANTITY,
        re.compile(rf"\b{_HEDGE}{_NUM_OR_WORD}(?:[\s-]+{_UNIT})\b", re.IGNORECASE),
    ),
    (
        NUMBER,
        re.compile(
            rf"(?<![\w.]){_HEDGE}(?:{_NUM}(?:st|nd|rd|th)?|{_NUMBER_WORD}(?:[\s-]+{_NUMBER_WORD})*{_SCALE})"
            rf"(?![\w])",
            re.IGNORECASE,
        ),
    ),
]

_HAS_NUMBER = re.compile(rf"\d|\b{_NUMBER_WORD}\b", re.IGNORECASE)
_TOKEN_RE = re.compile(r"[\w'’&.-]+")
_JOINERS = frozenset("of de del la le von van der al bin da du and for the".split())
_NAME_STOP = frozenset(
    """a an the in on at of for to by with from as and or but if it its this that these those
    he she they we i his her their our after before during while when where who which what
    however meanwhile also there here since under over according""".split()
)
_PLACE_PREPOSITIONS = frozenset("in at from near to into across outside inside around".split())


@dataclass(frozen=True, slots=True)
class TypedSpan:
    start: int  # offsets in the sentence
    end: int
    text: str
    type: str


@lru_cache(maxsize=1024)  # asked three times per answer
def expected_type(question: str) -> str | None:
    """The type of answer a question asks for, or None when it is not a typed factoid
    question (why, how, what-is descriptions, ...)."""
    q = " ".join(question.lower().replace("’", "'").split())
    q = re.sub(r"[?!.]+$", "", q)
    if re.search(
        r"\bhow (?:much|many)\b.*\b(?:money|cost|costs|pay|paid|worth|price|"
        r"spend|spent|invest|invested|investment|fund|funding|budget|dollars?|"
        r"value|revenue|salary|fee|raise|raised|sell|sold|earn|earned)\b",
        q,
    ):
        return MONEY
    if re.search(r"\b(?:what|which) (?:percentage|percent|proportion|share|fraction)\b", q) or (
        re.search(r"\bhow much\b", q) and re.search(r"\b(?:percent|percentage|rate)\b", q)
    ):
        return PERCENT
    if re.search(r"\bhow many\b", q):
        return NUMBER
    if re.search(r"\bhow (?:long|far|tall|high|big|large|wide|deep|heavy|old|fast)\b", q):
        return QUANTITY
    if re.search(r"\bhow much\b", q):
        return QUANTITY
    if re.search(
        r"^(?:when\b|.*\b(?:what|which|in what|in which) (?:year|years|date|day|month|"
        r"century|decade|time|season|era|period)\b|.*\bwhen\b)",
        q,
    ):
        return DATE
    if re.search(
        r"\b(?:what|which)(?: \w+){0,2} (?:number|amount|score|total|rank|population)\b", q
    ):
        return NUMBER
    if re.search(r"^where\b|.*\bwhere (?:is|was|are|were|did|does|do|will|can)\b", q) or re.search(
        r"\b(?:what|which|in what|in which)(?: \w+)? (?:city|country|state|town|region|place|"
        r"location|continent|county|province|island|river|stadium|venue)\b",
        q,
    ):
        return PLACE
    if re.search(r"^(?:who|whom|whose)\b|.*\b(?:who|whom|whose)\b", q) or re.search(
        r"\b(?:what|which)(?: \w+){0,2} (?:is the name|was the name|company|companies|team|teams|"
        r"organization|organisation|university|group|person|president|minister|leader|"
        r"player|carmaker|firm|bank|agency|party|network|band|author|name)\b",
        q,
    ):
        return NAME
    return None


def typed_spans(sentence: str, wanted: str | None = None) -> list[TypedSpan]:
    """Dates, amounts of money, percentages, quantities, numbers and capitalised names in a
    sentence, in order; where patterns overlap, the earlier one in that list wins. `wanted`:
    only look for what can answer a question of that type (faster)."""
    found: list[TypedSpan] = []
    taken = [False] * len(sentence)
    patterns = _PATTERNS
    if wanted in (NAME, PLACE):
        patterns = []
    elif wanted == DATE:
        patterns = [(k, p) for k, p in _PATTERNS if k == DATE]
    elif wanted is not None and not _HAS_NUMBER.search(sentence):
        patterns = []
    for kind, pattern in patterns:
        for m in pattern.finditer(sentence):
            start, end = m.start(), m.end()
            text = sentence[start:end].rstrip(" ,.").lstrip(" ,")
            if not text or any(taken[start:end]):
                continue
            for i in range(start, end):
                taken[i] = True
            found.append(TypedSpan(start, start + len(text), text, kind))
    for start, end in _name_runs(sentence) if wanted in (None, NAME, PLACE) else []:
        if any(taken[start:end]):
            continue
        before = sentence[:start].split()
        kind = PLACE if before and before[-1].lower() in _PLACE_PREPOSITIONS else NAME
        found.append(TypedSpan(start, end, sentence[start:end], kind))
    return sorted(found, key=lambda s: s.start)


def matches(expected: str, span_type: str) -> bool:
    """Whether a span of `span_type` can answer a question expecting `expected`."""
    if expected == span_type:
        return True
    compatible = {
        NUMBER: {QUANTITY, MONEY, PERCENT},
        QUANTITY: {NUMBER, MONEY, PERCENT},
        MONEY: set(),
        PERCENT: set(),
        NAME: {PLACE},
        PLACE: {NAME},
        DATE: set(),
    }
    return span_type in compatible.get(expected, set())


def _name_runs(sentence: str) -> list[tuple[int, int]]:
    """Runs of capitalised words ("Bank of Korea", "Kassym-Jomart Tokayev"), joiners allowed
    inside, function words trimmed from the ends."""
    tokens = [(m.start(), m.end(), m.group().strip(".'’")) for m in _TOKEN_RE.finditer(sentence)]
    runs, current = [], []
    for i, (start, end, word) in enumerate(tokens):
        capital = bool(word) and word[0].isupper() and word.lower() not in _NAME_STOP
        gap = sentence[tokens[i - 1][1] : start] if i else ""
        breaks = any(ch in gap for ch in ',;:()"“”')
        if current and breaks:
            runs.append(current)
            current = []
        if capital:
            current.append((start, end, word))
        elif current and word.lower() in _JOINERS:
            current.append((start, end, ""))
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    out = []
    for run in runs:
        while run and not run[-1][2]:
            run = run[:-1]
        if run:
            text = sentence[run[0][0] : run[-1][1]].rstrip(".'’")
            out.append((run[0][0], run[0][0] + len(text)))
    return out


_TIME_UNIT = re.compile(
    r"\b(?:years?|months?|weeks?|days?|hours?|minutes?|seconds?|decades?|centuries|century)\b",
    re.IGNORECASE,
)
_TIME_WORD = re.compile(
    r"\d|\b(?:years?|months?|weeks?|days?|decades?|century|centuries|era|age|period|reign|"
    r"war|dynasty|times?|after|before|during|until|since|ago|later|earlier|early|late|now|"
    r"today|tomorrow|yesterday|spring|summer|autumn|fall|winter|morning|evening|night|"
    r"then|once|soon)\b",
    re.IGNORECASE,
)
_COUNT_WORD = re.compile(
    rf"\d|\b(?:{_NUMBER_WORD}|single|both|none|no|several|multiple|once|twice|dozen|couple|"
    r"zero|first|second|third)\b",
    re.IGNORECASE,
)
_ASKS_WHEN = re.compile(
    r"^(?:when\b|(?:in |on |by |from |since |until )?(?:what|which) (?:year|years|date|day|"
    r"month|century|decade)\b)",
    re.IGNORECASE,
)
_ASKS_WHERE = re.compile(r"^(?:where|from where|to where)\b", re.IGNORECASE)
_ASKS_COUNT = re.compile(r"^(?:.*\s)?how many\s+([a-z][\w-]*)", re.IGNORECASE)


def type_mismatch(question: str, span: str, after: str = "") -> str | None:
    """Why a short answer span cannot answer the question, judged by the question's leading
    words, or None: a "when" question answered with no time in it, a "where" question
    answered with a time or a bare number, a "how many X" answered with no count or with a
    duration ("two years", or "two" followed by "years" in `after`, the text after the span)
    when X is not a time unit. Only clear mismatches count: a "who" question may be answered
    by "the dukes", so names are not checked."""
    q = " ".join(question.replace("’", "'").split())
    if _ASKS_WHEN.search(q):
        return None if _TIME_WORD.search(span) or typed_spans(span, DATE) else "a time"
    if _ASKS_WHERE.search(q):
        words = _TOKEN_RE.findall(span)
        timed = typed_spans(span, DATE) or (words and all(_COUNT_WORD.fullmatch(w) for w in words))
        return "a place" if timed else None
    counted = _ASKS_COUNT.search(q)
    if counted:
        if not _COUNT_WORD.search(span):
            return "a count"
        unit = _TIME_UNIT.search(span) or _TIME_UNIT.match(after.lstrip(" -"))
        if unit and not _TIME_UNIT.search(counted.group(1)):
            return f"a count of {counted.group(1)}"
    return None
