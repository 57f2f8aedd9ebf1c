"""The template's Makefile on a machine with Python, make and git but no uv: it installs the
pinned uv into build/ and puts only that on PATH for the baked projects' own targets.

pip reads a stand-in uv wheel from a local folder (PIP_NO_INDEX, PIP_FIND_LINKS), so the
test stays off the network; what it proves is the Makefile's part: which version it asks
for, where it puts it, that it is used and installed once."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1]
PINNED = re.findall(r"^UV_VERSION := (\S+)$", (TEMPLATE / "Makefile").read_text(), re.M)[0]


def stand_in_wheel(folder: Path, version: str) -> None:
    """A wheel named uv whose `uv` script prints its version, as the real one does."""
    scripts = f"uv-{version}.data/scripts"
    files = {
        f"{scripts}/uv": f"#!/bin/sh\necho 'uv {version} (stand-in)'\n",
        f"{scripts}/uvx": "#!/bin/sh\necho uvx\n",
        f"uv-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: uv\nVersion: {version}\n",
        f"uv-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\n"
        "Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    with zipfile.ZipFile(folder / f"uv-{version}-py3-none-any.whl", "w") as wheel:
        for name, text in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o100755 << 16
            wheel.writestr(info, text)
        record = "".join(f"{name},,\n" for name in [*files, f"uv-{version}.dist-info/RECORD"])
        wheel.writestr(f"uv-{version}.dist-info/RECORD", record)


def test_without_uv_on_path_make_installs_the_pinned_uv_once_and_puts_only_it_on_path(
    tmp_path,
):
    wheels, project, tools = tmp_path / "wheels", tmp_path / "template", tmp_path / "bin"
    for folder in (wheels, project, tools):
        folder.mkdir()
    stand_in_wheel(wheels, PINNED)
    shutil.copy(TEMPLATE / "Makefile", project / "Makefile")
    # A Python with venv, not ours (CPython sets _base_executable; typeshed leaves it out).
    (tools / "python3").symlink_to(sys._base_executable)  # type: ignore[attr-defined]
    path = f"{tools}:/usr/bin:/bin"
    assert shutil.which("uv", path=path) is None, "uv is on the test's PATH"
    env = {"HOME": str(tmp_path), "PATH": path, "PIP_NO_INDEX": "1",
           "PIP_FIND_LINKS": str(wheels), "LANG": os.environ.get("LANG", "C.UTF-8")}  # fmt: skip

    def make(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["make", *args], cwd=project, env=env, capture_output=True, text=True, timeout=300
        )

    first, again = make("uv"), make("uv")
    shown = make("--eval", "show-path: ; @echo $$PATH", "show-path")

    assert first.returncode == 0, first.stdout + first.stderr
    assert f"installing uv {PINNED} into build/" in first.stdout
    assert first.stdout.rstrip().endswith(f"uv {PINNED} (stand-in)")
    assert again.returncode == 0 and "installing" not in again.stdout
    assert again.stdout.strip() == f"uv {PINNED} (stand-in)"
    local = project / "build" / "tools" / "bin"
    assert shown.stdout.strip().split(":")[0] == str(local), shown.stdout
    assert sorted(p.name for p in local.iterdir()) == ["uv", "uvx"]
