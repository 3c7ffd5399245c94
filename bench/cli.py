"""`python -m bench COMMAND ...`: every command is a module with `add_arguments(parser)` and
`run(args) -> int`. Known failures print one line (`error: ...`) and exit non-zero."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

COMMANDS = {
    "train": ("bench.commands.train", "train one model and save a checkpoint and a JSON summary"),
    "evaluate": ("bench.commands.evaluate", "compute metrics of a checkpoint"),
    "list": ("bench.commands.sweep", "list the sweeps with their axes and budgets"),
    "sweep": ("bench.commands.sweep", "run a sweep (an Optuna study) and record every trial"),
    "leaderboard": ("bench.commands.leaderboard", "rebuild leaderboards and figures from the results store"),
}


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is a single line (exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    from lae.config import ConfigError
    from lae.data import DataError
    from lae.train import CheckpointError, DivergenceError

    from bench.errors import BenchError

    parser = OneLineParser(prog="python -m bench", description="lae-bench: Langevin Autoencoders vs VAE baselines")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)
    modules = {}
    argv = sys.argv[1:] if argv is None else argv
    for name, (module_name, help_text) in COMMANDS.items():
        # Import only the module of the command asked for (keeps --help fast, isolates failures).
        if argv and argv[0] == name:
            module = importlib.import_module(module_name)
            modules[name] = module
            p = sub.add_parser(name, help=help_text, description=help_text)
            getattr(module, f"add_{name}_arguments", getattr(module, "add_arguments"))(p)
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    args = parser.parse_args(argv)
    module = modules[args.command]
    warnings.filterwarnings("default", module="lae")
    try:
        return int(getattr(module, f"run_{args.command}", getattr(module, "run", None))(args) or 0)
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
