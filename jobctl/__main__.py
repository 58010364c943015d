"""`python -m jobctl`."""

from jobctl.cli import main

main()
