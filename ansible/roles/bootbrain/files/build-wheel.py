#!/usr/bin/env python3
"""Build the bootbrain wheel from a source checkout, on the controller.

Usage: build-wheel.py CHECKOUT OUTDIR

The checkout is first copied to a scratch directory without VCS data, virtualenvs
or earlier build output, because setuptools builds in-tree and would otherwise both
litter the operator's checkout and ship modules left over in a stale ``build/``.
``SOURCE_DATE_EPOCH`` makes the wheel byte-for-byte reproducible, so an unchanged
checkout gives an unchanged wheel and the role's copy task stays "ok".

The build backend (pyproject's ``[build-system] requires``) is installed once into
a virtualenv kept beside OUTDIR, keyed by those requirements, instead of into a
fresh isolated environment on every run.

Prints the path of the wheel as the last line of output.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
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


def build_env(checkout: Path, cache: Path, env: dict[str, str]) -> Path:
    """A virtualenv with the build backend installed; its python."""
    pyproject = tomllib.loads((checkout / "pyproject.toml").read_text())
    requires = sorted(pyproject.get("build-system", {}).get("requires", ["setuptools"]))
    key_data = json.dumps([sys.version, requires]).encode()
    venv = cache / f"build-env-{hashlib.sha256(key_data).hexdigest()[:12]}"
    python = venv / "bin" / "python"
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".build-env.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / ".ready").is_file():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            # `wheel`: setuptools before 70.1 needs it for bdist_wheel without isolation.
            subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", *requires, "wheel"],
                check=True,
                env=env,
                stdout=sys.stderr,
            )
            (venv / ".ready").write_text(json.dumps(requires) + "\n")
    return python


def main(checkout: Path, outdir: Path) -> int:
    if not (checkout / "pyproject.toml").is_file():
        print(f"{checkout} has no pyproject.toml: not a bootbrain checkout", file=sys.stderr)
        return 2
    outdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, SOURCE_DATE_EPOCH=EPOCH, PIP_DISABLE_PIP_VERSION_CHECK="1")
    python = build_env(checkout, outdir.parent, env)
    with tempfile.TemporaryDirectory(prefix="bootbrain-build-") as scratch:
        src = Path(scratch) / "src"
        wheels = Path(scratch) / "wheels"
        shutil.copytree(checkout, src, ignore=IGNORE, symlinks=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
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
