"""Which PDF library reads text best: pypdf or pdfminer.six (issue #18).

Measures, on PDFs made here with fpdf2 (so the true text is known) and on any real PDFs
given on the command line (or found under /usr/share/doc):

- reading order: difflib ratio of the true word sequence and the extracted one (1 = same);
  two columns written in reading order, and written right column first (some producers do);
- hyphenation: share of words broken with a hyphen at a line end that come out whole after
  the loader's rule (join "ex-\\ntraction" when the next line starts in lower case);
- running headers: share of pages whose header and footer come out as lines of their own
  (what lets the loader drop them);
- speed: milliseconds per page;
- on a real PDF made from HTML that is installed beside it (Debian's shared-mime-info spec,
  DocBook), the same reading-order ratio against the words of that HTML;
- on real PDFs, with no true text: glued words (tokens of 25+ letters, a sign of missing
  spaces) per 1,000 words, and lines left ending in a hyphen;
- the licence and what each pulls in.

    python eval/pdf_libraries.py [more.pdf ...]
"""

from __future__ import annotations

import difflib
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import metadata, requires
from pathlib import Path

WORDS = (
    "the quarry company reported that extraction of tungsten and molybdenum rose during "
    "the second quarter while the processing plant near the valley doubled its capacity "
    "and engineers expected further growth once the new railway connection opened for "
    "freight traffic between the mine and the port authorities approved the environmental "
    "assessment after consultation with local communities and independent experts"
).split()
HEADER = "ACME Minerals Quarterly Report"
SPEC = Path("/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf")
SPEC_HTML = [
    SPEC.with_suffix(".html") / name
    for name in ("index.html", "x34.html", "x497.html", "b518.html")
]
REAL_PDFS = [
    Path("/usr/share/doc/libtasn1-doc/libtasn1.pdf"),
    Path("/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf"),
]


def _lines(words: list[str], width: int, hyphenate: bool) -> list[str]:
    """Words wrapped to `width` characters; with `hyphenate`, a long word that does not fit
    is split with a hyphen (as TeX or Word would)."""
    lines, line = [], ""
    for word in words:
        candidate = f"{line} {word}".strip()
        if len(candidate) <= width:
            line = candidate
            continue
        room = width - len(line) - 2
        if hyphenate and len(word) >= 8 and room >= 3:
            lines.append(f"{line} {word[:room]}-")
            line = word[room:]
        else:
            lines.append(line)
            line = word
    return [*lines, line] if line else lines


def make_pdf(path: Path, pages: list[dict]) -> None:
    """A PDF whose pages hold text columns (lists of lines) at fixed places, a header and a
    footer; `right_first` writes the right column into the content stream first."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(False)
    pdf.set_font("Helvetica", size=10)
    for spec in pages:
        pdf.add_page()
        columns = spec["columns"]
        order = list(range(len(columns)))
        if spec.get("right_first"):
            order.reverse()
        if spec.get("header"):
            pdf.set_xy(15, 10)
            pdf.cell(0, 5, spec["header"])
        for c in order:
            x = 15 if len(columns) == 1 else 15 + c * 95
            for i, line in enumerate(columns[c]):
                pdf.set_xy(x, 25 + i * 5)
                pdf.cell(90, 5, line)
        if spec.get("footer"):
            pdf.set_xy(15, 282)
            pdf.cell(0, 5, spec["footer"])
    pdf.output(str(path))


def cases(directory: Path) -> list[dict]:
    """The generated test PDFs, each with its true text in reading order."""
    out = []
    left, right = WORDS[:28], WORDS[28:]
    for name, right_first in (("two columns", False), ("two columns, right written first", True)):
        cols = [_lines(left, 44, False), _lines(right, 44, False)]
        path = directory / f"{name}.pdf"
        make_pdf(path, [{"columns": cols, "right_first": right_first}])
        out.append({"name": name, "path": path, "truth": [" ".join(left + right)]})
    long_words = [w for w in WORDS if len(w) >= 8]
    lines = _lines(WORDS * 3, 40, True)
    path = directory / "hyphenation.pdf"
    make_pdf(path, [{"columns": [lines]}])
    out.append(
        {"name": "hyphenation", "path": path, "truth": [" ".join(WORDS * 3)], "words": long_words}
    )
    pages = []
    for n in range(1, 7):
        body = WORDS[n:] + WORDS[:n]
        pages.append(
            {"columns": [_lines(body, 80, False)], "header": HEADER, "footer": f"Page {n} of 6"}
        )
    path = directory / "running header.pdf"
    make_pdf(path, pages)
    truth = [f"{HEADER} {' '.join(WORDS[n:] + WORDS[:n])} Page {n} of 6" for n in range(1, 7)]
    out.append({"name": "running header", "path": path, "truth": truth, "header": True})
    long = [{"columns": [_lines(WORDS * 4, 80, True)], "header": HEADER}] * 60
    path = directory / "sixty pages.pdf"
    make_pdf(path, long)
    out.append({"name": "sixty pages", "path": path, "truth": None})
    return out


def pypdf_pages(path: Path) -> list[str]:
    from pypdf import PdfReader

    return [page.extract_text() or "" for page in PdfReader(path).pages]


def pdfminer_pages(path: Path) -> list[str]:
    from pdfminer.high_level import extract_text

    text = extract_text(str(path))
    return text.split("\f")[: -1 if text.endswith("\f") else None]


LIBRARIES: dict[str, tuple[str, Callable[[Path], list[str]]]] = {
    "pypdf": ("pypdf", pypdf_pages),
    "pdfminer.six": ("pdfminer.six", pdfminer_pages),
}


def dehyphenate(text: str) -> str:
    return re.sub(r"(\w)-\n(?=[a-z])", r"\1", text)


def order_ratio(truth: str, text: str) -> float:
    a, b = truth.split(), dehyphenate(text).split()
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def source_words(files: list[Path]) -> list[str]:
    """The words of HTML pages, navigation dropped: the true text of a PDF made from them."""
    import lxml.html

    words: list[str] = []
    for file in files:
        tree = lxml.html.fromstring(file.read_bytes())
        nav = '//head|//script|//style|//div[@class="navheader"]|//div[@class="navfooter"]'
        for node in tree.xpath(nav):
            node.drop_tree()
        words += re.findall(r"\w+", " ".join(tree.itertext()))
    return words


def timed(read: Callable[[Path], list[str]], path: Path) -> tuple[list[str], float]:
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        pages = read(path)
        best = min(best, time.perf_counter() - t)
    return pages, best


def main(extra: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        generated = cases(Path(tmp))
        print("Generated PDFs (fpdf2), true text known")
        print(f"{'case':34} {'library':13} {'order':>6} {'hyphen':>7} {'header':>7} {'ms/page':>8}")
        for case in generated:
            for lib, (_, read) in LIBRARIES.items():
                pages, seconds = timed(read, case["path"])
                ms = 1000 * seconds / max(1, len(pages))
                order = hyphen = header = "-"
                if case["truth"]:
                    ratios = [order_ratio(t, p) for t, p in zip(case["truth"], pages, strict=False)]
                    order = f"{statistics.mean(ratios):.3f}"
                if "words" in case:
                    joined = dehyphenate("\n".join(pages)).split()
                    hyphen = f"{sum(w in joined for w in case['words']) / len(case['words']):.2f}"
                if case.get("header"):
                    own = [
                        HEADER in p.splitlines() and f"Page {n} of 6" in p.splitlines()
                        for n, p in enumerate(pages, start=1)
                    ]
                    header = f"{sum(own) / len(own):.2f}"
                print(f"{case['name']:34} {lib:13} {order:>6} {hyphen:>7} {header:>7} {ms:8.1f}")
    if SPEC.is_file() and all(f.is_file() for f in SPEC_HTML):
        truth = source_words(SPEC_HTML)
        print(f"\nA real PDF against its HTML source ({SPEC.name}, {len(truth)} words)")
        for lib, (_, read) in LIBRARIES.items():
            words = re.findall(r"\w+", dehyphenate("\n".join(read(SPEC))))
            ratio = difflib.SequenceMatcher(None, truth, words, autojunk=False).ratio()
            print(f"{lib:13} order {ratio:.3f}")
    real = [Path(p) for p in extra] or [p for p in REAL_PDFS if p.is_file()]
    if real:
        print("\nReal PDFs: no true text; glued = tokens of 25+ letters per 1,000 words")
        print(f"{'file':34} {'library':13} {'pages':>6} {'words':>7} {'glued':>6} {'ms/page':>8}")
        for path in real:
            for lib, (_, read) in LIBRARIES.items():
                pages, seconds = timed(read, path)
                words = "\n".join(pages).split()
                glued = sum(1 for w in words if re.fullmatch(r"[A-Za-z]{25,}", w))
                ms = 1000 * seconds / max(1, len(pages))
                per = 1000 * glued / max(1, len(words))
                counts = f"{len(pages):6d} {len(words):7d} {per:6.2f} {ms:8.1f}"
                print(f"{path.name[:34]:34} {lib:13} {counts}")
    print("\nLicence and dependencies")
    for lib, (dist, _) in LIBRARIES.items():
        meta = metadata(dist)
        licence = meta.get("License-Expression") or meta.get("License") or "?"
        deps = [r.split(";")[0].strip() for r in requires(dist) or [] if "extra ==" not in r]
        print(f"{lib:13} {meta['Version']:10} {licence[:30]:30} needs: {', '.join(deps) or '-'}")


if __name__ == "__main__":
    main(sys.argv[1:])
