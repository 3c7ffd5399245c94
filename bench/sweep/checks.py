"""Type and range checks of a spec's raw TOML values (bench.sweep.spec), run when the spec loads: each failure is one
BenchError from the caller's ``bad(key, why, table)``, which names the spec file, the key and its line."""

from __future__ import annotations

import dataclasses
import math
import re

import optuna

from bench.errors import BenchError
from bench.metrics.settings import MetricSettings
from bench.registry import PRESETS
from lae.config import INT32_MAX

MAX_TRIALS = 100_000  # a budget's trials at most (grid points x seeds, or n_trials): a larger study is a typo


def is_number(v) -> bool:
    """A finite int or float (not a bool: TOML's true is no number)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def is_count(v, least: int = 1, most: int = INT32_MAX) -> bool:
    """An int (not a bool) in least..most (a C int by default)."""
    return isinstance(v, int) and not isinstance(v, bool) and least <= v <= most


def table(value, key: str, bad, where: str = "") -> dict:
    """``value`` when it is a TOML table, else the error."""
    if not isinstance(value, dict):
        raise bad(key, f"must be a table, got {value!r}", where)
    return value


def numbers(values, key: str, bad, where: str = "") -> tuple:
    """A non-empty list of finite numbers, as a tuple."""
    if not isinstance(values, list) or not values or not all(is_number(v) for v in values):
        raise bad(key, f"must be a non-empty list of finite numbers, got {values!r}", where)
    return tuple(values)


def metric_settings(raw: dict, where: str, bad) -> dict:
    """A budget's ``metrics`` preset and ``metric_settings`` overrides (``where``: ``budget.<name>``): the preset
    known, every key a MetricSettings field, every value of its type and range (MetricSettings.validate). Returns the
    overrides, lists as tuples."""
    preset = raw.get("metrics")
    if preset not in PRESETS:
        raise bad(f"{where}.metrics", f"must name a metric preset ({', '.join(PRESETS)}), got {preset!r}", where)
    overrides = table(raw.get("metric_settings", {}), f"{where}.metric_settings", bad, where)
    fields = [f.name for f in dataclasses.fields(MetricSettings)]
    for key in overrides:
        if key not in fields:
            raise bad(f"{where}.metric_settings.{key}", f"unknown setting; expected one of {', '.join(fields)}", where)
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    try:
        MetricSettings.preset(preset).replace(**overrides).validate(where="-")
    except BenchError as exc:
        raise bad(f"{where}.metric_settings", str(exc).removeprefix("-: "), where) from None
    return overrides


def search_space(search: dict, run_fields: set, bad) -> dict:
    """A tuning sweep's ``[search.<field>]`` tables: a RunConfig field, finite low < high, ``log`` a boolean (then
    low > 0)."""
    if not search:
        raise bad("search", "a tuning sweep needs a [search.<field>] table with low, high (and log)")
    for key, dist in table(search, "search", bad).items():
        where = f"search.{key}"
        dist = table(dist, where, bad, where)
        if key not in run_fields:
            raise bad(where, "not a RunConfig field", where)
        if set(dist) - {"low", "high", "log"}:
            raise bad(
                f"{where}.{sorted(set(dist) - {'low', 'high', 'log'})[0]}", "unknown key; expected low, high, log"
            )
        low, high, log = dist.get("low"), dist.get("high"), dist.get("log", False)
        if not (is_number(low) and is_number(high) and low < high):
            raise bad(where, f"needs finite numbers low < high, got low={low!r}, high={high!r}", where)
        if not isinstance(log, bool) or (log and low <= 0):
            raise bad(f"{where}.log", f"must be true (then low > 0) or false, got {log!r}", where)
    return search


def pruner(args: dict, bad) -> dict:
    """``[pruner]``: arguments optuna.pruners.MedianPruner accepts (n_startup_trials, n_warmup_steps, ...)."""
    args = table(args, "pruner", bad, "pruner")
    if any(not is_count(v, 0) for v in args.values()):
        key = next(k for k, v in args.items() if not is_count(v, 0))
        raise bad(f"pruner.{key}", f"must be a non-negative integer, got {args[key]!r}", "pruner")
    try:
        optuna.pruners.MedianPruner(**args)
    except (TypeError, ValueError) as exc:
        raise bad("pruner", f"not a MedianPruner argument: {exc}", "pruner") from None
    return args


def config_source(spec, budget, point, message: str) -> str:
    """The spec key whose value set the first RunConfig field named in a ConfigError ``message`` (the value that took
    effect: the grid value, a model entry's ``set``, the budget's sizes, its ``set``, ``fixed``)."""
    entry = next((i for i, m in enumerate(spec.models) if m["label"] == point.variant), None)
    for name in re.findall(r"[a-z_]+", message):
        if name == "model" and entry is not None:
            return f"models[{entry}].model"
        if name in point.overrides and entry is not None:
            if point.axis_value is not None and spec.models[entry].get("axis") == name:
                return f"budget.{budget.name}.values" if budget.values is not None else "values"
            return f"models[{entry}].set.{name}"
        if name in ("epochs", "train_size", "val_size") and getattr(budget, name) is not None:
            return f"budget.{budget.name}.{name}"
        if name in budget.set:
            return f"budget.{budget.name}.set.{name}"
        if name in spec.fixed:
            return f"fixed.{name}"
    return f"budget.{budget.name}"
