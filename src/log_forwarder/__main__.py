"""`python -m log_forwarder`: the operator's CLI (needs the `cli` extra)."""

from log_forwarder.cli import main

main()
