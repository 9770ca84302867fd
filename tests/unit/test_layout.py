"""The package layout holds (ARCHITECTURE.md): imports go api -> rag -> index, never back,
api never reaches into index, and rag keeps one package per stage."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]  # tests/unit/test_layout.py -> the repository


def imported(package: str) -> dict[str, set[str]]:
    """Top-level packages each module of `package` imports (lazy imports included)."""
    out: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
        out[str(path.relative_to(ROOT))] = names
    return out


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("index", {"rag", "api"}), ("rag", {"api"}), ("api", {"index"})],
)
def test_imports_go_one_way(package, forbidden):
    modules = imported(package)
    assert len(modules) > 3, f"no modules found under {ROOT / package}"
    wrong = {m: sorted(n & forbidden) for m, n in modules.items() if n & forbidden}
    assert not wrong, wrong


def test_rag_keeps_one_package_per_stage():
    modules = sorted(p.name for p in (ROOT / "rag").glob("*.py") if p.name != "__init__.py")
    assert len(modules) <= 8, modules
    for stage in ("ingest", "text", "embed", "search", "answer", "evaluation"):
        assert (ROOT / "rag" / stage / "__init__.py").is_file(), stage


def backend_name_comparisons(package: str) -> list[str]:
    """`x == "milvus"`-style comparisons (and `in` a tuple of names) outside index/backends/."""
    from index import STORE_KINDS

    found = []
    for path in (ROOT / package).rglob("*.py"):
        if "backends" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                names = {
                    c.value
                    for side in (node.left, *node.comparators)
                    for c in ast.walk(side)
                    if isinstance(c, ast.Constant)
                }
                if names & set(STORE_KINDS):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


@pytest.mark.parametrize("package", ["index", "rag", "api"])
def test_nothing_outside_the_backends_branches_on_a_backend_name(package):
    assert backend_name_comparisons(package) == []


def test_the_settings_offer_exactly_the_registered_backends():
    from typing import get_args

    from index import STORE_KINDS
    from rag.config import StoreKind

    assert sorted(get_args(StoreKind)) == sorted(STORE_KINDS)
