"""Registries that other packages extend through Python entry points (lae.families: model families; lae.data:
datasets). Discovery runs once per process, when the registry's module is first imported."""

from __future__ import annotations

import importlib.metadata
import re
import warnings

NAME = re.compile(r"[a-z][a-z0-9_-]*\Z")  # a plugin's name: a --model/--dataset value and a file name part


def discover(group: str, builtin: dict, convert) -> dict:
    """builtin plus every installed entry point of `group` whose name is free and valid and whose value loads and
    converts (`convert(value)`); the others are left out with one warning line each."""
    found = dict(builtin)
    for entry in sorted(importlib.metadata.entry_points(group=group), key=lambda e: e.name):
        where = f"entry point {entry.name!r} ({entry.value}) of group {group}"
        if not NAME.match(entry.name) or entry.name in found:
            why = "its name is taken" if entry.name in found else f"its name is not {NAME.pattern}"
            warnings.warn(f"{where} left out: {why}", stacklevel=2)
            continue
        try:
            found[entry.name] = convert(entry.load())
        except Exception as exc:  # a broken plugin: say so, keep the suite usable
            warnings.warn(f"{where} left out: {type(exc).__name__}: {exc}", stacklevel=2)
    return found
