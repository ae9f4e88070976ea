"""The ``berth`` command line: one entry point, sub-commands grouped by noun."""
