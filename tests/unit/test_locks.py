"""Every distribution of the test environment is pinned, at the version installed, by a lock
file the README's test command installs: a fresh machine gets what these tests ran with."""

from __future__ import annotations

import re
from importlib.metadata import distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ("requirements-dev.lock", "requirements-nodeps.lock")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if m := PIN.match(line.strip()):
            out[canonical(m.group(1))] = m.group(2)
    return out


def test_every_installed_distribution_is_pinned_at_its_version():
    locked: dict[str, str] = {}
    for name in LOCKS:
        locked.update(pins(ROOT / name))
    installed = {canonical(d.metadata["Name"]): d.version for d in distributions()}
    installed.pop("rag-cited", None)  # the project itself, installed editable
    assert len(installed) > 100, len(installed)
    unpinned = sorted(n for n in installed if n not in locked)
    assert not unpinned, f"installed but in no lock file: {unpinned}"
    drifted = {n: (v, locked[n]) for n, v in installed.items() if locked[n] != v}
    assert not drifted, f"installed version differs from the lock: {drifted}"
    assert {"pip", "setuptools", "pytest", "schemathesis"} <= set(locked)


def test_the_service_lock_and_the_build_pins_agree_with_the_dev_lock():
    dev = pins(ROOT / "requirements-dev.lock")
    for name in ("requirements.lock", "build-constraints.txt"):
        wrong = {n: (v, dev[n]) for n, v in pins(ROOT / name).items() if n in dev and dev[n] != v}
        assert not wrong, (name, wrong)
    assert set(pins(ROOT / "requirements.lock")) <= set(dev)
