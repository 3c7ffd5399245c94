"""Benchmarks (not part of the default test run): `tox -e bench` or `pytest benchmarks -o python_files='bench_*.py'`.
Each benchmark adds rows to REPORT; they are printed as one table at the end of the session."""

import warnings

REPORT: list[str] = []


def pytest_configure(config):
    warnings.filterwarnings("ignore", message="LAE feature width")  # b512 > h256: Theorem 1's rank condition


def pytest_terminal_summary(terminalreporter):
    if REPORT:
        terminalreporter.section("lae-bench figures")
        for line in REPORT:
            terminalreporter.write_line(line)
