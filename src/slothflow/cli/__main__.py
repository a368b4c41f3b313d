"""``python -m slothflow.cli``."""

from . import main

main()
