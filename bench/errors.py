"""Errors the CLI turns into one line on stderr and a non-zero exit (never a traceback)."""


class BenchError(Exception):
    """A user-facing failure of the harness (bad sweep spec, unreachable storage, ...). exit_code 2."""

    exit_code = 2
