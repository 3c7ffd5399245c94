"""`python -m bench COMMAND ...`: the command table below names each verb's module; every command module
exposes exactly `add_arguments(parser)` and `run(args) -> int`. Only the module of the command asked for is
imported (keeps --help fast, isolates failures). Known failures print one line (`error: ...`) and exit non-zero."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

# name -> (module, one-line help), in the order `python -m bench --help` lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("bench.commands.train", "train one model and save a checkpoint and a JSON summary"),
    "evaluate": ("bench.commands.evaluate", "compute metrics of a checkpoint"),
    "list": ("bench.commands.list", "list the sweeps with their axes and budgets"),
    "sweep": ("bench.commands.sweep", "run a sweep (an Optuna study) and record every trial"),
    "leaderboard": ("bench.commands.leaderboard", "rebuild leaderboards and figures from the results store"),
}


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is a single line (exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when empty)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    from bench.errors import BenchError
    from lae.config import ConfigError
    from lae.data import DataError
    from lae.train import CheckpointError, DivergenceError

    parser = OneLineParser(prog="python -m bench", description="lae-bench: Langevin Autoencoders vs VAE baselines")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)
    argv = sys.argv[1:] if argv is None else argv
    command = None
    for name, (module_name, help_text) in COMMANDS.items():
        if argv and argv[0] == name:
            command = importlib.import_module(module_name)
            command.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    args = parser.parse_args(argv)  # an unknown or missing command exits here, so `command` is set below
    warnings.filterwarnings("default", module="lae")
    try:
        return int(command.run(args) or 0)
    except (ConfigError, DataError, CheckpointError, BenchError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except DivergenceError as exc:
        print(f"error: run diverged: {one_line(exc)}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `python -m bench list | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
