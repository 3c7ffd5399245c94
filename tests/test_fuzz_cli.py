"""Random invalid input to every option of every verb and to every key of a sweep spec (Hypothesis), run through the
real CLI: each run must print exactly one line on stderr (`error: ...`), exit with status 2, print no traceback, and
change no file (the workspace's files keep their bytes, nothing new appears in it or in the checkout).

The options are read from each command's own parser (bench.cli.COMMANDS), so a new option is fuzzed without an edit
here: an option's invalid values come from its declaration (choices: any other text; bench.errors.ranged: integers
outside its lae.config range; bench.errors.path_arg: an empty path; a RunConfig field of `train`: numbers outside the
field's documented range), and the few free-text options have their own strategies (INVALID_TEXT). Each run is its
own process forked from one that imported the CLI once (conftest.forked_cli).

Profiles (Hypothesis settings, chosen by $LAE_BENCH_FUZZ): "fast" (the default suite: a few dozen runs per test,
about half a minute in all) and "fuzz" (`tox -e fuzz`: hundreds per test)."""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import tomllib
from pathlib import Path

import pytest
import torch
from conftest import ROOT, TINY_BUDGET, TINY_SPEC
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.cli import COMMANDS, OneLineParser
from bench.errors import path_arg
from bench.metrics import GROUPS
from lae.config import MODELS, RunConfig
from lae.data import DATASETS
from lae.train import fit, save_checkpoint

COMMON = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow], derandomize=False)
settings.register_profile("fast", max_examples=15, **COMMON)
settings.register_profile("fuzz", max_examples=400, **COMMON)
PROFILE = os.environ.get("LAE_BENCH_FUZZ", "fast")

pytestmark = pytest.mark.usefixtures("one_thread")

# Text a user could type (no NUL: argv cannot hold one; no lone surrogates).
TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=12)
SKIP = {"help", "no_progress", "overwrite", "no_leaderboard", "no_figures", "no_serve", "reproduce", "data_dir", "host"}


def _not_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return True
    return False


def _out_of(rng) -> st.SearchStrategy[str]:
    """Numbers outside a lae.config.Range, or text that is not a number of its kind, as an argv token."""
    if rng.integer:
        outside = st.integers(max_value=int(rng.low) - 1) | st.integers(min_value=int(rng.high) + 1)
        return outside.map(str) | TEXT.filter(_not_int)
    low = st.floats(max_value=rng.low, exclude_max=not rng.open_low, allow_nan=False)
    high = st.floats(min_value=rng.high, exclude_min=not rng.open_high, allow_nan=False)
    return (low | high).map(repr) | st.sampled_from(["nan", "-inf", "inf", "1e309", "abc", ""])


def _setting() -> st.SearchStrategy[str]:
    """evaluate --setting NAME=VALUE: an unknown name, or a known one with a value no setting takes."""
    from bench.metrics.settings import MetricSettings

    names = [f.name for f in __import__("dataclasses").fields(MetricSettings)]
    bad_value = st.sampled_from(["-1", "nan", "-inf", "abc", "", str(2**31), "1e400"])
    known = st.builds(lambda n, v: f"{n}={v}", st.sampled_from(names), bad_value)
    return known | TEXT.filter(lambda t: t.partition("=")[0] not in names)


def _first_bad(text: str) -> bool:
    """A --first that names no point of the tiny spec (its points: lae step_size=0.0001, lae step_size=0.001, vae)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    points = ("lae", "vae", "lae step_size=0.0001", "lae step_size=0.001")
    return not text.startswith("-") and (not names or any(n not in points for n in names))


def _groups_bad(text: str) -> bool:
    groups = [g.strip() for g in text.split(",") if g.strip()]
    return not groups or any(g not in GROUPS for g in groups)


# (verb, dest) -> invalid values of a free-text option or a positional
INVALID_TEXT = {
    ("evaluate", "metrics"): lambda: TEXT.filter(_groups_bad),
    ("evaluate", "setting"): _setting,
    ("evaluate", "dataset"): lambda: TEXT.filter(lambda t: t.lower().replace("_", "-") != "digits"),
    ("evaluate", "checkpoint"): lambda: st.sampled_from(["", "{ws}/nowhere.pt", "{ws}/a-file", "{ws}"]),
    ("figures", "checkpoint"): lambda: st.sampled_from(["", "{ws}/nowhere.pt", "{ws}/a-file", "{ws}"]),
    ("train", "dataset"): lambda: TEXT.filter(lambda t: t not in DATASETS and not t.startswith("-")),
    ("conformance", "model"): lambda: TEXT.filter(lambda t: t not in MODELS and not t.startswith("-")),
    ("conformance", "options"): lambda: st.sampled_from(["", "[]", "{", '{"no_such_option": 1}', '{"latent_dim": -1}']),
    ("sweep", "name"): lambda: TEXT.filter(lambda t: t.strip() and not t.startswith("-") and "/" not in t),
    ("sweep", "storage"): lambda: st.sampled_from(["journal:{ws}/a-file", "bogus://x", "journal:{ws}/a-file/x"]),
    ("sweep", "first"): lambda: TEXT.filter(_first_bad),
    ("leaderboard", "sweeps"): lambda: TEXT.filter(lambda t: t.strip() and not t.startswith("-")),
    ("leaderboard", "study"): lambda: TEXT,
    ("dashboard", "studies"): lambda: TEXT.filter(lambda t: t.strip() and not t.startswith("-")),
}
EXTRA_PATHS = ["{ws}/a-file/below"]  # a path option under a file: refused like an empty one


def _option_strategy(verb: str, action: argparse.Action) -> st.SearchStrategy[list[str]] | None:
    """The argv tokens of one invalid use of `action`, or None when it has no invalid value on its own."""
    flag = action.option_strings[-1] if action.option_strings else None
    if action.dest in SKIP or isinstance(action, argparse.BooleanOptionalAction) or action.nargs == 0:
        return None
    if (verb, action.dest) in INVALID_TEXT:
        values = INVALID_TEXT[(verb, action.dest)]()
    elif action.choices:
        values = TEXT.filter(lambda t, c=action.choices: t not in c)
    elif action.type is path_arg:
        values = st.sampled_from(["", "  ", *EXTRA_PATHS])
    elif getattr(action.type, "range", None) is not None:
        values = _out_of(action.type.range)
    elif verb == "train" and action.dest in RUN_FIELDS and RUN_FIELDS[action.dest].metadata.get("range"):
        values = _out_of(RUN_FIELDS[action.dest].metadata["range"])
    else:
        raise AssertionError(f"{verb} {flag or action.dest}: no strategy for its invalid values; add one here")
    if flag is None:
        return values.map(lambda v: [v])
    return values.map(lambda v, f=flag: [f"{f}={v}"])  # one token: a value starting with "-" stays the value


RUN_FIELDS = {f.name: f for f in __import__("dataclasses").fields(RunConfig)}


def _actions(verb: str) -> list[argparse.Action]:
    import importlib

    parser = OneLineParser(prog=f"python -m bench {verb}")
    importlib.import_module(COMMANDS[verb][0]).add_arguments(parser)
    return parser._actions


def _cases(verb: str) -> st.SearchStrategy[tuple[str, list[str]]]:
    """(dest, tokens) of one invalid option of `verb`; train also: an option its model or optimizer does not read."""
    options = [(a.dest, s) for a in _actions(verb) if (s := _option_strategy(verb, a)) is not None]
    drawn = st.one_of([s.map(lambda t, d=d: (d, t)) for d, s in options])
    if verb == "train":
        unused = st.sampled_from(RunConfig().unused())
        valid = {"k": "3", "momentum": "0.5", "logistic_scale": "shared"}
        drawn |= unused.map(lambda n: (n, [f"--{n.replace('_', '-')}={valid.get(n, '1')}"]))
    return drawn


def _snapshot(ws: Path) -> dict:
    files = {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(ws.rglob("*")) if p.is_file()}
    return {"files": files, "root": sorted(p.name for p in ROOT.iterdir())}


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """The workspace: a trained digits checkpoint, a tiny sweep spec, a plain file, an empty results directory."""
    base = tmp_path_factory.mktemp("fuzz")
    config = RunConfig(model="lae", dataset="digits", hidden=16, latent_dim=2, batch_size=50, train_size=200)
    save_checkpoint(fit(config), base / "run" / "checkpoint.pt")
    (base / "a-file").write_text("a plain file\n")
    (base / "sweeps").mkdir()
    budget = TINY_BUDGET.format(train_size=300, epochs=1, seeds=1)
    (base / "sweeps" / "tiny.toml").write_text(TINY_SPEC.format(values=[1e-4, 1e-3], mh="true", budget=budget))
    (base / "results").mkdir()
    return base


BASE = {  # argv valid but for the drawn option (a positional drawn replaces the base's)
    "train": ["train", "--dataset", "digits", "--hidden", "16", "--batch-size", "50", "--no-progress",
              "--out", "{ws}/train-out"],
    "evaluate": ["evaluate", "{ws}/run/checkpoint.pt", "--preset", "smoke", "--no-progress", "--out", "{ws}/m.json"],
    "figures": ["figures", "{ws}/run/checkpoint.pt", "--out", "{ws}/figures"],
    "sweep": ["sweep", "{ws}/sweeps/tiny.toml", "--results", "{ws}/results", "--no-leaderboard", "--no-progress"],
    "leaderboard": ["leaderboard", "--results", "{ws}/results"],
    "dashboard": ["dashboard", "--results", "{ws}/results", "--no-serve", "--storage", "{ws}/studies.db"],
    "list": ["list"],
    "conformance": ["conformance", "vae"],
}  # fmt: skip
POSITIONAL = {"evaluate": 1, "figures": 1, "sweep": 1, "conformance": 1}  # the index of the base's positional argument


def _assert_one_line_and_nothing_changed(forked_cli, ws: Path, argv: list[str]) -> None:
    before = _snapshot(ws)
    argv = [a.replace("{ws}", str(ws)) for a in argv]
    run = forked_cli(*argv)
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    where = f"argv {argv}: exit {run.returncode}, stderr {run.stderr!r}"
    assert "Traceback" not in run.stderr, where
    assert run.returncode == 2, where
    assert len(lines) == 1 and lines[0].startswith("error: "), where
    assert _snapshot(ws) == before, f"{where}: a file changed"


@pytest.mark.parametrize("verb", list(COMMANDS))
def test_every_invalid_option_is_one_line_exit_2_and_changes_nothing(verb, forked_cli, ws):
    @settings(settings.get_profile(PROFILE))
    @given(case=_cases(verb))
    def check(case):
        dest, tokens = case
        argv = list(BASE[verb])
        if not tokens[0].startswith("--"):  # a positional: it replaces the base's, or comes first
            if verb in POSITIONAL:
                argv[POSITIONAL[verb]] = tokens[0]
            else:
                argv.insert(1, tokens[0])
        else:
            argv += tokens
        _assert_one_line_and_nothing_changed(forked_cli, ws, argv)

    check()


# ------------------------------------------------------------------------------------------------------ spec keys
def _keys(table: dict, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a parsed spec (list indices included: ("models", 0, "model"))."""
    out = []
    for key, value in table.items():
        path = (*prefix, key)
        out.append(path)
        if isinstance(value, dict):
            out += _keys(value, path)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            out += [q for i, v in enumerate(value) for q in [(*path, i), *_keys(v, (*path, i))]]
    return out


def _invalid_for(value) -> st.SearchStrategy:
    """Values no key holding `value` takes: of another type, or (numbers) out of every range a count has."""
    text, boolean, table = st.text(max_size=8), st.booleans(), st.just({"x": 1})
    if isinstance(value, bool):
        return st.integers() | text | table
    if isinstance(value, int):
        bad_float = st.sampled_from([1.5, math.nan, math.inf, -math.inf])
        return st.integers(max_value=-1) | st.integers(2**31, 2**62) | bad_float | text | boolean
    if isinstance(value, float):
        return st.floats(max_value=-1e-300) | st.sampled_from([math.nan, math.inf, -math.inf]) | text | boolean
    if isinstance(value, str):
        return st.integers() | st.floats(allow_nan=False) | boolean | st.just([1, 2]) | table
    if isinstance(value, list) and value and isinstance(value[0], dict):  # [[models]]: empty, or not tables
        return st.sampled_from([[], [1], "lae"])
    if isinstance(value, list):
        return st.sampled_from([[], ["a"], [math.nan], [-1.0], 1.0, "0.1", [True]])
    return st.integers() | text | boolean  # a table replaced by a scalar


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):  # a TOML basic string: quote and backslash escaped, control characters as \uXXXX
        return '"' + "".join(_char(c) for c in value) + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"


def _char(c: str) -> str:
    if c in '"\\':
        return "\\" + c
    return f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else c


def dump_toml(doc: dict) -> str:
    """A parsed spec back to TOML: scalars and inline tables at the top, then one [table] per table (nested tables
    inline) and [[models]] entries."""
    lines = [f"{k} = {_toml(v)}" for k, v in doc.items() if not isinstance(v, (dict, list)) or _inline(v)]
    for key, value in doc.items():
        if isinstance(value, dict):
            for name, sub in value.items():
                if isinstance(sub, dict) and key == "budget":
                    lines += [f"[{key}.{name}]", *(f"{k} = {_toml(v)}" for k, v in sub.items())]
            scalars = {k: v for k, v in value.items() if not (isinstance(v, dict) and key == "budget")}
            if scalars or key != "budget":
                lines += [f"[{key}]", *(f"{k} = {_toml(v)}" for k, v in scalars.items())]
        elif isinstance(value, list) and not _inline(value):
            for entry in value:
                lines += [f"[[{key}]]", *(f"{k} = {_toml(v)}" for k, v in entry.items())]
    return "\n".join(lines) + "\n"


def _inline(value) -> bool:
    return isinstance(value, list) and not (value and all(isinstance(v, dict) for v in value))


def _set(doc, path: tuple, value):
    import copy

    doc = copy.deepcopy(doc)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


def test_the_dumper_writes_the_tiny_spec_back(ws):
    doc = tomllib.loads((ws / "sweeps" / "tiny.toml").read_text())
    assert tomllib.loads(dump_toml(doc)) == doc


def test_every_invalid_spec_value_is_one_line_exit_2_and_changes_nothing(forked_cli, ws):
    doc = tomllib.loads((ws / "sweeps" / "tiny.toml").read_text())
    paths = [p for p in _keys(doc) if p[-1] != "description" and p[-1] != "label"]  # any text is valid there

    def get(path):
        target = doc
        for key in path:
            target = target[key]
        return target

    edits = st.sampled_from(paths).flatmap(lambda p: _invalid_for(get(p)).map(lambda v, p=p: (p, v)))
    unknown = st.sampled_from([p for p in _keys(doc) if isinstance(get(p), dict)] + [()]).flatmap(
        lambda p: st.from_regex(r"[a-z_]{1,10}", fullmatch=True).map(lambda k, p=p: ((*p, k + "_x"), 1))
    )
    spec = ws / "fuzzed" / "fuzzed.toml"

    @settings(settings.get_profile(PROFILE))
    @given(edit=edits | unknown)
    def check(edit):
        path, value = edit
        spec.parent.mkdir(exist_ok=True)
        spec.write_text(dump_toml(_set(doc, path, value)))
        argv = ["sweep", str(spec), "--results", "{ws}/results", "--no-leaderboard", "--no-progress"]
        _assert_one_line_and_nothing_changed(forked_cli, ws, argv)

    check()


def test_the_workspace_checkpoint_is_valid(forked_cli, ws):
    """The base argv is valid: without a drawn option, evaluate runs (the fuzzing tests' failures are the option's)."""
    assert torch.load(ws / "run" / "checkpoint.pt", weights_only=True)["config"]["dataset"] == "digits"
    run = forked_cli("figures", ws / "run" / "checkpoint.pt", "--out", ws / "valid-figures")
    assert run.returncode == 0, run.stderr
