"""`python -m racebench`: the `racebench` command."""

from racebench.cli import main

main()
