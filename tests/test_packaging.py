"""Pins agree everywhere: requirements/*.txt, lock.txt, pyproject ranges, environment.yml, binder/.

The exact pins in requirements/*.txt are the source of truth; every other place that names a
version of the same package must agree with them, or a Binder / conda / pip user gets a
different environment from the one CI tested.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
REQ_DIR = ROOT / "requirements"
# requirements file -> the pyproject group that must carry its range
GROUPS = {"base": None, "ui": "ui", "test": "test", "bench": "bench"}


def read_pins(path: Path) -> dict[str, Requirement]:
    """Parse a pip requirements file: {canonical name: Requirement}; option lines are skipped."""
    return parse_pin_lines(path.read_text().splitlines(), where=str(path.relative_to(ROOT)))


def parse_pin_lines(lines: list[str], where: str) -> dict[str, Requirement]:
    pins: dict[str, Requirement] = {}
    for raw in lines:
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#") or line.startswith("-"):
            continue
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name not in pins, f"{where}: {req.name} is listed twice"
        pins[name] = req
    return pins


def exact_version(req: Requirement, where: str) -> Version:
    specs = list(req.specifier)
    assert len(specs) == 1 and specs[0].operator == "==" and "*" not in specs[0].version, (
        f"{where}: {req} is not an exact pin (want name==X.Y.Z)"
    )
    return Version(specs[0].version)


def pinned(stem: str) -> dict[str, Version]:
    path = REQ_DIR / f"{stem}.txt"
    return {n: exact_version(r, path.name) for n, r in read_pins(path).items()}


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def pyproject_ranges(group: str | None) -> dict[str, Requirement]:
    project = pyproject()
    lines = project["dependencies"] if group is None else project["optional-dependencies"][group]
    return parse_pin_lines(lines, where=f"pyproject {group or 'dependencies'}")


def all_pyproject_ranges() -> dict[str, list[Requirement]]:
    out: dict[str, list[Requirement]] = {}
    for group in GROUPS.values():
        for name, req in pyproject_ranges(group).items():
            out.setdefault(name, []).append(req)
    return out


def env_yml_pins() -> dict[str, Version]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml needs exactly one pip: section"
    lines = pip_sections[0]
    assert "-e ." in lines, "environment.yml pip: section must install torchdeck itself (-e .)"
    return {n: exact_version(r, "environment.yml") for n, r in parse_pin_lines(lines, "environment.yml").items()}


def ui_and_base() -> dict[str, Version]:
    pins = pinned("base")
    for name, version in pinned("ui").items():
        assert pins.get(name, version) == version, f"{name} pinned differently in base.txt and ui.txt"
        pins[name] = version
    return pins


# (a) conda and Binder install what the requirements pin -------------------------------------

@pytest.mark.parametrize("target", ["environment.yml", "binder/requirements.txt"])
def test_env_files_repeat_base_and_ui_pins(target: str) -> None:
    if target == "environment.yml":
        theirs = env_yml_pins()
    else:
        theirs = {n: exact_version(r, target) for n, r in read_pins(ROOT / target).items()}
    ours = ui_and_base()
    missing = sorted(set(ours) - set(theirs))
    extra = sorted(set(theirs) - set(ours))
    differ = {n: (str(ours[n]), str(theirs[n])) for n in set(ours) & set(theirs) if ours[n] != theirs[n]}
    assert not missing, f"{target} lacks pins from base.txt/ui.txt: {missing}"
    assert not extra, f"{target} pins packages not in base.txt/ui.txt: {extra}"
    assert not differ, f"{target} pins differ (requirements, {target}): {differ}"


def test_binder_uses_cpu_torch_index() -> None:
    text = (ROOT / "binder" / "requirements.txt").read_text()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in text


# (b) exact pins sit inside pyproject's ranges ------------------------------------------------

@pytest.mark.parametrize("stem", sorted(GROUPS))
def test_requirements_pins_satisfy_pyproject_group(stem: str) -> None:
    ranges = pyproject_ranges(GROUPS[stem])
    for name, version in pinned(stem).items():
        assert name in ranges, (
            f"requirements/{stem}.txt pins {name}=={version} but pyproject "
            f"{GROUPS[stem] or 'dependencies'} has no range for it"
        )
        assert ranges[name].specifier.contains(version, prereleases=True), (
            f"requirements/{stem}.txt pins {name}=={version}, outside pyproject range {ranges[name]}"
        )


def test_pyproject_groups_match_requirements_files() -> None:
    for stem, group in GROUPS.items():
        assert set(pyproject_ranges(group)) == set(pinned(stem)), (
            f"pyproject {group or 'dependencies'} and requirements/{stem}.txt name different packages"
        )


def test_lock_pins_satisfy_every_pyproject_range() -> None:
    lock = pinned("lock")
    for name, reqs in all_pyproject_ranges().items():
        assert name in lock, f"requirements/lock.txt lacks {name}, which pyproject depends on"
        for req in reqs:
            assert req.specifier.contains(lock[name], prereleases=True), (
                f"lock.txt has {name}=={lock[name]}, outside pyproject range {req}"
            )


# (c) every pin is the locked version ---------------------------------------------------------

@pytest.mark.parametrize("stem", sorted(GROUPS))
def test_requirements_pins_equal_lock(stem: str) -> None:
    lock = pinned("lock")
    for name, version in pinned(stem).items():
        assert name in lock, f"requirements/{stem}.txt pins {name} but lock.txt does not"
        assert lock[name] == version, (
            f"requirements/{stem}.txt pins {name}=={version}, lock.txt has {lock[name]}"
        )


def test_pyproject_basics() -> None:
    project = pyproject()
    assert project["name"] == "torchdeck"
    assert project["scripts"]["torchdeck"] == "torchdeck.cli:main"
    assert set(project["optional-dependencies"]) >= {"ui", "test", "bench"}
