"""`python -m bench COMMAND ...`: the command table below names each verb's module; every command module
exposes exactly `add_arguments(parser)` and `run(args) -> int`. Only the module of the command asked for is
imported (keeps --help fast, isolates failures). Known failures print one line (`error: ...`) and exit non-zero;
warnings print one line each (`warning: ...`)."""

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
    "figures": ("bench.commands.figures", "pictures of one trained model: samples, reconstructions, latent space"),
    "dashboard": ("bench.commands.dashboard", "open the published (or local) studies in optuna-dashboard"),
    "conformance": ("bench.commands.conformance", "check a model family against the exact linear-Gaussian model"),
}

# What Ctrl-C means for each command (exit status 130); a command not listed was simply stopped.
INTERRUPTED = {
    "train": "interrupted; nothing was saved (rerun the same command to train again)",
    "evaluate": "interrupted; nothing was written",
    "sweep": "interrupted; rerun the same command to resume (finished trials are kept and not run again)",
}


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is a single line (exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when empty)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def is_number(token: str) -> bool:
    """True for a token float() reads ("-1e-4", "-.5", "-inf"): never an option name."""
    try:
        float(token)
    except ValueError:
        return False
    return True


def join_negative_numbers(argv: list[str]) -> list[str]:
    """`--step-size -1e-4` -> `--step-size=-1e-4`: argparse takes "-1e-4" for an option and says "expected one
    argument"; joined, the value reaches the option's own validation (`step_size must be a positive ...`)."""
    out: list[str] = []
    for token in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and token.startswith("-") and is_number(token):
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def warning_line(message, category, filename, lineno, file=None, line=None) -> str:
    """warnings.formatwarning as one line: `warning: <message>`."""
    return f"warning: {' '.join(str(message).split())}\n"


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = warning_line  # first: importing lae discovers plugins, which may warn (lae.plugins)
    from bench.errors import BenchError, describe
    from lae.config import ConfigError
    from lae.data import DataError
    from lae.train import CheckpointError, DivergenceError

    parser = OneLineParser(prog="python -m bench", description="lae-bench: Langevin Autoencoders vs VAE baselines")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)
    argv = join_negative_numbers(sys.argv[1:] if argv is None else list(argv))
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
        print(f"error: {INTERRUPTED.get(args.command, 'interrupted')}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `python -m bench list | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a full disk, a read-only or vanished directory: the cause, in one line
        print(f"error: {describe(exc)}", file=sys.stderr)
        return 2
