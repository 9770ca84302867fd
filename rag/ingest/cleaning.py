"""Turn a scraped news article into clean text with a title and a publication date.

Pure functions: text in, `Cleaned` out. The rules target noise common to scraped
news (ad markers, share widgets, bylines, datelines) and are deliberately limited
to the header region and to whole lines, so that article content is never cut.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache

# Whole lines that are page furniture, compared case-insensitively without trailing punctuation.
BOILERPLATE_LINES = frozenset(
    {
        "advertisement",
        "advertisment",
        "advertisement here",
        "advertisement - scroll to continue",
        "sponsored",
        "from",
        "send to",
        "share",
        "share this",
        "share this article",
        "share on facebook",
        "share on twitter",
        "print",
        "email",
        "facebook",
        "twitter",
        "linkedin",
        "whatsapp",
        "telegram",
        "read more",
        "read also",
        "see also",
        "related",
        "related articles",
        "related news",
        "latest",
        "latest news",
        "most read",
        "tags",
        "comments",
        "subscribe",
        "follow us",
        "...",
        "…",
    }
)
_TAGS_RE = re.compile(r"^(tags|keywords|topics)\s*:", re.IGNORECASE)
_BYLINE_RE = re.compile(r"^by\s+\S+", re.IGNORECASE)
_DATE_LABEL_RE = re.compile(r"^(date|published|updated|posted|posted on)\s*:?\s*", re.IGNORECASE)
# Candidate spans for numeric dates that dateparser's free-text search does not find:
# ISO dates and 8-digit stamps such as the one in a URL slug "news-15062024-034527".
_NUMERIC_DATE_RE = re.compile(r"(?<!\d)(\d{4}-\d{1,2}-\d{1,2}|\d{8})(?!\d)")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]")
_SPACES_RE = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_WORD_RE = re.compile(r"\w+", re.UNICODE)

HEADER_MAX_LINES = 12
BODY_MIN_WORDS = 20


@dataclass(frozen=True, slots=True)
class Cleaned:
    text: str
    title: str
    date: str | None  # ISO date


def normalize(text: str) -> str:
    """Unicode NFC, Unix newlines, no control characters, single spaces, stripped lines."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL_RE.sub("", text)
    lines = [_SPACES_RE.sub(" ", line).strip() for line in text.split("\n")]
    return "\n".join(lines).strip("\n")


def is_boilerplate(line: str) -> bool:
    key = line.strip().lower().rstrip(":").strip()
    return key in BOILERPLATE_LINES or bool(_TAGS_RE.match(line))


def _word_count(line: str) -> int:
    return len(_WORD_RE.findall(line))


@lru_cache(maxsize=1)
def _date_search():
    # dateparser loads its language data on first use: keep it out of import time.
    from dateparser.search import search_dates

    return search_dates


_DATEPARSER_SETTINGS = {
    "REQUIRE_PARTS": ["day", "month", "year"],
    "PREFER_DAY_OF_MONTH": "first",
    "RETURN_AS_TIMEZONE_AWARE": False,
}


def _valid(d: datetime | date | None) -> bool:
    return d is not None and 1900 <= d.year <= 2100


def find_date(line: str) -> tuple[str, int, int] | None:
    """The first publication-like date in `line`: (ISO date, start, end) or None."""
    import dateparser

    found: list[tuple[int, int, str]] = []
    for m in _NUMERIC_DATE_RE.finditer(line):
        token = m.group(1)
        formats = ["%Y-%m-%d"] if "-" in token else ["%d%m%Y", "%Y%m%d", "%m%d%Y"]
        parsed = dateparser.parse(token, date_formats=formats, languages=["en"])
        if _valid(parsed):
            found.append((m.start(1), m.end(1), parsed.date().isoformat()))
    for text, parsed in _date_search()(line, languages=["en"], settings=_DATEPARSER_SETTINGS) or []:
        start = line.find(text)
        if start >= 0 and _valid(parsed) and _word_count(text) >= 2:
            found.append((start, start + len(text), parsed.date().isoformat()))
    if not found:
        return None
    start, end, iso = min(found)
    return iso, start, end


def _join_broken_words(lines: list[str]) -> list[str]:
    """Re-join a word split across lines by a scraper ("President Y" / "oon Suk Yeol")."""
    out: list[str] = []
    for line in lines:
        if out and line[:1].islower() and re.search(r"(?:^|\s)[A-Z]$", out[-1]):
            out[-1] = out[-1] + line
        else:
            out.append(line)
    return out


def _is_dateline(line: str, span: tuple[int, int]) -> bool:
    rest = (line[: span[0]] + " " + line[span[1] :]).strip()
    return _word_count(rest) <= 8


def _looks_like_name(line: str) -> bool:
    words = line.split()
    return 1 <= len(words) <= 3 and all(w[:1].isupper() and w.isalpha() for w in words)


def _paragraph_lines(raw: str) -> list[tuple[str, bool]]:
    """The text's lines without furniture, each with whether a blank line came before it."""
    lines = _join_broken_words(normalize(raw).split("\n"))
    paragraphs: list[tuple[str, bool]] = []
    blank_before = False
    for line in lines:
        if not line:
            blank_before = True
            continue
        if not is_boilerplate(line):
            paragraphs.append((line, blank_before))
        blank_before = False
    return paragraphs


def _joined(lines: list[tuple[str, bool]]) -> str:
    parts: list[str] = []
    for j, (line, blank) in enumerate(lines):
        if j:
            parts.append("\n\n" if blank else "\n")
        parts.append(line)
    return "".join(parts)


def clean_body(raw: str) -> str:
    """Clean text that is not an article's start (a PDF's later pages): normalized, furniture
    lines dropped, paragraphs kept; no title, byline or date rules."""
    return _joined(_paragraph_lines(raw))


def clean_article(raw: str, *, title: str | None = None, date_hint: str | None = None) -> Cleaned:
    """Clean a scraped article. `title`/`date_hint` come from metadata when the source has it."""
    # Keep paragraph structure: remember which lines followed a blank line.
    paragraphs = _paragraph_lines(raw)

    body_start = next(
        (i for i, (line, _) in enumerate(paragraphs) if _word_count(line) >= BODY_MIN_WORDS),
        len(paragraphs),
    )
    header_end = min(body_start, HEADER_MAX_LINES)
    found_date = date_hint
    found_title = title.strip() if title else ""
    keep: list[tuple[str, bool]] = []
    for i, (line, blank) in enumerate(paragraphs):
        in_header = i < header_end
        if in_header or i == body_start:
            hit = find_date(line[:200])
            if hit is not None:
                iso, start, end = hit
                if in_header and _is_dateline(line, (start, end)):
                    found_date = found_date or iso
                    continue
                label = _DATE_LABEL_RE.match(line)
                if label and start <= label.end() + 1:
                    # "date 2024-03-26 On March 25, ..." : drop the label and the date.
                    found_date = found_date or iso
                    line = line[end:].lstrip(" -–—|:,")
                    if not line:
                        continue
        if in_header:
            if _BYLINE_RE.match(line) and _word_count(line) <= 6:
                continue
            if found_title and line.strip() == found_title:
                continue  # the title repeated
            if not found_title and 3 <= _word_count(line) <= 30:
                found_title = line
            elif found_title and _looks_like_name(line):
                continue  # a bare author name
        keep.append((line, blank))

    text = _joined(keep)
    return Cleaned(text=text, title=found_title or fallback_title(text), date=found_date)


def fallback_title(text: str, max_words: int = 12) -> str:
    """A title for an article that has none: the start of its first sentence."""
    first = re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0] if text.strip() else ""
    words = first.split()
    if len(words) <= max_words:
        return first
    return " ".join(words[:max_words]) + "…"


def parse_date(value: str | None) -> str | None:
    """An ISO date from a metadata value in any common format, or None."""
    if not value or not str(value).strip():
        return None
    import dateparser

    value = str(value).strip()
    parsed = dateparser.parse(value, languages=["en"], settings={"PREFER_DAY_OF_MONTH": "first"})
    if not _valid(parsed):
        hit = find_date(value)
        return hit[0] if hit else None
    return parsed.date().isoformat()
