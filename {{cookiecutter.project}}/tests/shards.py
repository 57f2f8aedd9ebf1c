"""A layer split over parallel CI jobs: whole test modules, longest first.

CI runs the integration layer as several jobs at once (GitLab `parallel:`, a GitHub
matrix), each told its place by CI_NODE_INDEX (1-based) of CI_NODE_TOTAL. A module stays
whole in one job: its module fixtures (deploys, servers, builds) are made once and its
tests keep their order. Modules go, longest first, to the job with the least work so far,
by the seconds `make test-durations` recorded in durations.json; a module not recorded yet
counts as the median of those that are.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping
from pathlib import Path

DURATIONS = Path(__file__).with_name("durations.json")


def position(environ: Mapping[str, str]) -> tuple[int, int]:
    """(index, total) of this job among the layer's parallel jobs; (1, 1) outside them."""
    total_text = environ.get("CI_NODE_TOTAL", "1") or "1"
    index_text = environ.get("CI_NODE_INDEX", "1") or "1"
    try:
        index, total = int(index_text), int(total_text)
    except ValueError:
        raise ValueError(
            f"CI_NODE_INDEX={index_text!r} and CI_NODE_TOTAL={total_text!r} must be whole numbers"
        ) from None
    if total < 1 or not 1 <= index <= total:
        raise ValueError(f"CI_NODE_INDEX={index} is not between 1 and CI_NODE_TOTAL={total}")
    return index, total


def module_of(nodeid: str) -> str:
    return nodeid.split("::")[0]


def kept(
    nodeids: list[str], environ: Mapping[str, str], seconds: Mapping[str, float]
) -> list[str] | None:
    """The node ids this job runs: those of the modules `assign` gives it; None outside a
    split layer (every test runs)."""
    index, total = position(environ)
    if total == 1:
        return None
    modules = sorted({module_of(nodeid) for nodeid in nodeids})
    mine = set(assign(modules, seconds, total)[index - 1])
    return [nodeid for nodeid in nodeids if module_of(nodeid) in mine]


def recorded(file: Path = DURATIONS) -> dict[str, float]:
    """Seconds per module (its path from the project root), as last measured."""
    if not file.exists():
        return {}
    seconds: dict[str, float] = json.loads(file.read_text(encoding="utf-8"))
    return seconds


def costs(modules: list[str], seconds: Mapping[str, float]) -> dict[str, float]:
    """Each module's recorded seconds; the median of those recorded for one that is not."""
    known = [seconds[module] for module in modules if module in seconds]
    unknown = statistics.median(known) if known else 1.0
    return {module: seconds.get(module, unknown) for module in modules}


def longest_first(nodeids: list[str], seconds: Mapping[str, float]) -> list[str]:
    """`nodeids` with their modules in order of recorded time, longest first; each module's
    tests in their own order. Workers that take one module after another (xdist's
    --dist loadfile) then end close together: no long module is left to run alone last."""
    cost = costs(sorted({module_of(nodeid) for nodeid in nodeids}), seconds)
    return sorted(nodeids, key=lambda nodeid: -cost[module_of(nodeid)])  # sort is stable


def assign(modules: list[str], seconds: Mapping[str, float], total: int) -> list[list[str]]:
    """`modules` in `total` groups of about the same recorded time; every module in one."""
    cost = costs(modules, seconds)
    groups: list[list[str]] = [[] for _ in range(total)]
    loads = [0.0] * total
    # Ties broken by name, so every job (and every xdist worker in it) splits alike.
    for module in sorted(modules, key=lambda module: (-cost[module], module)):
        lightest = min(range(total), key=lambda group: (loads[group], group))
        groups[lightest].append(module)
        loads[lightest] += cost[module]
    return [sorted(group) for group in groups]


def store(measured: Mapping[str, float], root: Path, file: Path = DURATIONS) -> None:
    """Record `measured` seconds per module, keeping those of modules this run did not run
    and dropping those of modules no longer under `root`."""
    merged = {**recorded(file), **{module: round(s, 1) for module, s in measured.items()}}
    kept = {module: s for module, s in sorted(merged.items()) if (root / module).exists()}
    file.write_text(json.dumps(kept, indent=2) + "\n", encoding="utf-8")
