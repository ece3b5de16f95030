"""`python -m pipeline` is the same as `capaudit`."""

from pipeline.cli import main

main()
