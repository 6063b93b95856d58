#!/usr/bin/env python3
"""Build the bootbrain wheel from a source checkout, on the controller.

Usage: build-wheel.py CHECKOUT OUTDIR

The checkout is first copied to a scratch directory without VCS data, virtualenvs
or earlier build output, because setuptools builds in-tree and would otherwise both
litter the operator's checkout and ship modules left over in a stale ``build/``.
``SOURCE_DATE_EPOCH`` makes the wheel byte-for-byte reproducible, so an unchanged
checkout gives an unchanged wheel and the role's copy task stays "ok".
Prints the path of the wheel as the last line of output.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

IGNORE = shutil.ignore_patterns(
    ".git",
    ".hg",
    ".venv",
    "venv",
    ".tox",
    ".nox",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "*.pyc",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    "node_modules",
)
# 1980-01-01, the earliest timestamp a zip file can hold.
EPOCH = "315532800"


def main(checkout: Path, outdir: Path) -> int:
    if not (checkout / "pyproject.toml").is_file():
        print(f"{checkout} has no pyproject.toml: not a bootbrain checkout", file=sys.stderr)
        return 2
    outdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bootbrain-build-") as scratch:
        src = Path(scratch) / "src"
        wheels = Path(scratch) / "wheels"
        shutil.copytree(checkout, src, ignore=IGNORE, symlinks=True)
        env = dict(os.environ, SOURCE_DATE_EPOCH=EPOCH, PIP_DISABLE_PIP_VERSION_CHECK="1")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--wheel-dir",
                str(wheels),
                str(src),
            ],
            check=True,
            env=env,
            stdout=sys.stderr,
        )
        built = sorted(wheels.glob("bootbrain-*.whl"))
        if len(built) != 1:
            print(f"expected one bootbrain wheel, pip produced {built}", file=sys.stderr)
            return 1
        target = outdir / built[0].name
        tmp = outdir / f".{built[0].name}.tmp"
        shutil.copyfile(built[0], tmp)
        tmp.replace(target)
    print(target)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(Path(sys.argv[1]).resolve(), Path(sys.argv[2])))
