"""``python -m bootbrain``: the same command as ``bootbrain`` (the tests start servers
this way, with the interpreter they run under)."""

from bootbrain.cli import main

main()
