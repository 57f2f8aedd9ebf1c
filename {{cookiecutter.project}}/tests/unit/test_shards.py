"""CI's parallel integration jobs: each runs whole modules, together every module once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import shards

pytestmark = pytest.mark.unit

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_modules_go_longest_first_to_the_job_with_the_least_work():
    seconds = {"a": 50.0, "b": 40.0, "c": 30.0, "d": 20.0, "e": 10.0}
    groups = shards.assign(sorted(seconds), seconds, 2)
    # a -> 1; b -> 2; c -> 2 (40 < 50); d -> 1 (50 < 70); e -> 1 (70 = 70, the first wins).
    assert groups == [["a", "d", "e"], ["b", "c"]]
    assert [sum(seconds[m] for m in group) for group in groups] == [80.0, 70.0]


def test_the_longest_modules_run_first_each_whole_and_in_its_own_order():
    nodeids = ["t/a.py::x", "t/a.py::y", "t/b.py::x", "t/c.py::y", "t/c.py::x", "t/new.py::x"]
    seconds = {"t/a.py": 5.0, "t/b.py": 50.0, "t/c.py": 20.0}
    # new.py counts as the median (20 s), after c.py, which the collection put first.
    assert shards.longest_first(nodeids, seconds) == [
        "t/b.py::x", "t/c.py::y", "t/c.py::x", "t/new.py::x", "t/a.py::x", "t/a.py::y",
    ]  # fmt: skip


@pytest.mark.parametrize("total", [1, 2, 3, 5])
def test_every_module_is_in_exactly_one_job(total: int):
    modules = [f"tests/integration/test_{n}.py" for n in range(7)]
    groups = shards.assign(modules, {modules[0]: 90.0, modules[3]: 5.0}, total)
    assert len(groups) == total
    assert sorted(m for group in groups for m in group) == sorted(modules)


def test_a_module_not_recorded_yet_counts_as_the_median_of_those_that_are():
    seconds = {"long": 100.0, "mid": 30.0, "short": 10.0}
    # "new" weighs 30: long alone; mid + short + new (70) in the other job.
    groups = shards.assign(["long", "mid", "new", "short"], seconds, 2)
    assert groups == [["long"], ["mid", "new", "short"]]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [({}, (1, 1)), ({"CI_NODE_TOTAL": "1"}, (1, 1)),
     ({"CI_NODE_INDEX": "2", "CI_NODE_TOTAL": "3"}, (2, 3))],
)  # fmt: skip
def test_the_job_reads_its_place_from_ci_node_index_and_total(environ, expected):
    assert shards.position(environ) == expected


@pytest.mark.parametrize(
    ("environ", "message"),
    [({"CI_NODE_INDEX": "3", "CI_NODE_TOTAL": "2"}, "CI_NODE_INDEX=3 is not between 1 and CI_NODE_TOTAL=2"),
     ({"CI_NODE_INDEX": "0", "CI_NODE_TOTAL": "2"}, "CI_NODE_INDEX=0 is not between"),
     ({"CI_NODE_INDEX": "one", "CI_NODE_TOTAL": "2"}, "CI_NODE_INDEX='one' and CI_NODE_TOTAL='2' must be whole numbers")],
)  # fmt: skip
def test_a_place_outside_the_jobs_is_refused_naming_it(environ, message):
    with pytest.raises(ValueError, match=message):
        shards.position(environ)


def test_recorded_seconds_merge_round_and_forget_modules_that_are_gone(tmp_path: Path):
    (tmp_path / "tests").mkdir()
    for name in ("kept.py", "remeasured.py", "new.py"):
        (tmp_path / "tests" / name).touch()
    file = tmp_path / "durations.json"
    file.write_text(
        json.dumps({"tests/kept.py": 5.0, "tests/remeasured.py": 9.0, "tests/gone.py": 1.0})
    )
    shards.store({"tests/remeasured.py": 12.345, "tests/new.py": 0.04}, tmp_path, file)
    assert json.loads(file.read_text()) == {
        "tests/kept.py": 5.0, "tests/new.py": 0.0, "tests/remeasured.py": 12.3,
    }  # fmt: skip


def integration_tests() -> list[str]:
    """Node ids standing for every integration module of the project (one test each)."""
    return [
        f"tests/integration/{module.name}::test_one"
        for module in sorted((PROJECT_ROOT / "tests" / "integration").glob("test_*.py"))
    ]


def test_the_two_integration_jobs_split_the_layer_by_whole_modules():
    nodeids = integration_tests()
    jobs = [
        shards.kept(nodeids, {"CI_NODE_INDEX": str(k), "CI_NODE_TOTAL": "2"}, shards.recorded())
        for k in (1, 2)
    ]
    assert all(jobs) and shards.kept(nodeids, {}, shards.recorded()) is None
    assert sorted((jobs[0] or []) + (jobs[1] or [])) == sorted(nodeids)
    # Balanced by the recorded seconds: neither job has more than the longest module over.
    seconds = shards.recorded()
    loads = [sum(seconds.get(shards.module_of(n), 0.0) for n in job or []) for job in jobs]
    assert abs(loads[0] - loads[1]) <= max(seconds.values(), default=0.0)


FEW_MODULES = ("test_deploy_metric_gates", "test_served_bento", "test_release_store")


def test_a_ci_job_collects_only_its_share_and_a_wrong_place_stops_it():
    """The hook as pytest runs it (after -m): what job 2 of 2 collects is its share."""
    outside = {k: v for k, v in os.environ.items() if k not in ("CI_NODE_INDEX", "CI_NODE_TOTAL")}
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
               "-m", "integration"]  # fmt: skip

    def collect(index: str, *where: str) -> subprocess.CompletedProcess[str]:
        env = {**outside, "CI_NODE_INDEX": index, "CI_NODE_TOTAL": "2"}
        run = [*command, *where]
        return subprocess.run(run, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)

    # Three modules stand for the layer: the hook splits whatever pytest collected, and
    # collecting every module would import the whole package, seconds for nothing more.
    few = [f"tests/integration/{name}.py" for name in FEW_MODULES]
    done = collect("2", *few)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    collected = {shards.module_of(line) for line in done.stdout.splitlines() if "::" in line}
    standing = [nodeid for nodeid in integration_tests() if shards.module_of(nodeid) in few]
    second = shards.kept(standing, {"CI_NODE_INDEX": "2", "CI_NODE_TOTAL": "2"},
                         shards.recorded())  # fmt: skip
    assert collected and collected == {shards.module_of(nodeid) for nodeid in second or []}
    # One small module is enough to reach the hook (collecting every module costs seconds).
    wrong = collect("3", "tests/integration/test_deploy_metric_gates.py")
    assert wrong.returncode == 4, wrong.stdout[-2000:]
    assert "CI_NODE_INDEX=3 is not between 1 and CI_NODE_TOTAL=2" in wrong.stderr
