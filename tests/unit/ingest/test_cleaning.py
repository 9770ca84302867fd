from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from rag.config import BUNDLED_CORPUS
from rag.ingest.cleaning import clean_article, find_date, normalize

EXPECTED_DATES = {
    "000_a87859622d3621ae": "2024-03-26",  # "date 2024-03-26"
    "001_747dad745748a0c8": "2024-03-26",  # "March 26, 2024 - 15:50"
    "002_5b0ba33d9b196134": None,  # the article carries no date
    "003_fbb2cdbfd2149aa7": "2024-06-15",  # "news-15062024-034527"
    "004_a42af59a74583b78": "2024-06-14",  # "14 June 2024 13:47"
}
BOILERPLATE = {
    "Advertisment",
    "Advertisement here",
    "From",
    "Send to",
    "Read more",
    "Tags:",
    "Latest",
}


def cleaned(doc_id: str):
    return clean_article((BUNDLED_CORPUS / f"{doc_id}.txt").read_text(encoding="utf-8"))


def test_bundled_dates_are_extracted():
    for doc_id, expected in EXPECTED_DATES.items():
        assert cleaned(doc_id).date == expected, doc_id


def test_bundled_boilerplate_lines_are_removed():
    for path in Path(BUNDLED_CORPUS).glob("*.txt"):
        lines = set(clean_article(path.read_text(encoding="utf-8")).text.split("\n"))
        assert not lines & BOILERPLATE, (path.name, lines & BOILERPLATE)


def test_bylines_datelines_and_repeated_titles_go():
    text = cleaned("004_a42af59a74583b78").text
    assert "Kamol Ismailov" not in text
    assert "13:47" not in text
    title = "Uzbekistan and South Korea to develop regional strategic high-tech cluster"
    assert text.count(title) == 1
    assert "By Ji Da-gyum" not in cleaned("001_747dad745748a0c8").text
    assert not cleaned("003_fbb2cdbfd2149aa7").text.startswith("news-")
    assert cleaned("000_a87859622d3621ae").text.startswith("On March 25, 2024")


def test_titles():
    assert cleaned("001_747dad745748a0c8").title == (
        "Korea, Uzbekistan to bolster infra, energy, supply chain ties"
    )
    assert cleaned("004_a42af59a74583b78").title.startswith("Uzbekistan and South Korea")
    assert cleaned("002_5b0ba33d9b196134").title.startswith("Deeper Supply Chain Cooperation")


def test_word_broken_across_lines_is_rejoined():
    assert "President Yoon Suk Yeol’s three-nation tour" in cleaned("002_5b0ba33d9b196134").text


def test_content_is_kept():
    text = cleaned("001_747dad745748a0c8").text
    assert "including molybdenum and tungsten, crucial for semiconductors" in text
    assert "Exploring New Horizons in Cooperation" in cleaned("000_a87859622d3621ae").text


def test_find_date_formats():
    assert find_date("Published 2021-07-04 by staff")[0] == "2021-07-04"
    assert find_date("3 January 2020 09:00")[0] == "2020-01-03"
    assert find_date("no date in this line") is None


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_normalize_is_idempotent_and_clean(raw):
    once = normalize(raw)
    assert normalize(once) == once
    assert "\r" not in once and "\x00" not in once


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=400))
def test_clean_article_never_fails(raw):
    result = clean_article(raw)
    assert result.text == result.text.strip()
    assert bool(result.title) == bool(result.text)  # any text gets a title, none none
