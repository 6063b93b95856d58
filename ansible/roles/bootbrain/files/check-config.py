"""Validate a candidate bootbrain.toml before Ansible puts it in place.

Usage: <venv>/bin/python check-config.py FILE

Parses the file as TOML, then has bootbrain's own settings loader read it, so an
unknown key or a bad value fails here rather than when gunicorn starts.
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path


def main(path: str) -> int:
    with Path(path).open("rb") as f:
        tomllib.load(f)
    # Only the file may speak: a stray BOOTBRAIN_* variable must not mask an error.
    for name in [n for n in os.environ if n.startswith("BOOTBRAIN_")]:
        del os.environ[name]
    os.environ["BOOTBRAIN_CONFIG"] = path
    from bootbrain.config import load_settings

    load_settings()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
