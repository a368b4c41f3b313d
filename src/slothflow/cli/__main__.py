"""``python -m slothflow.cli``."""

from slothflow.cli import main

main()
