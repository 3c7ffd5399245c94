"""The sweep spec (``sweeps/<name>.toml``, see docs/sweeps.md): its schema (Spec, Budget, Point) and loading, in two
steps: ``parse_spec`` turns the TOML into a Spec (unknown keys, types, missing budgets) and ``validate_spec`` builds
and checks every trial's RunConfig, so an invalid value is rejected before anything trains.

Spec -> points: a grid sweep varies one LAE field (``axis``) over ``values``; every ``[[models]]`` entry either takes
the value in one of its fields (``axis = "k"``: IWAE with k = n_chains, the compute-matched baseline) or, without
``axis``, is trained once per seed (a flat baseline). A *point* is one (model entry, value) pair, labelled e.g.
``"lae step_size=0.001"``. A tuning sweep (``kind = "tune"``) searches ``[search]`` instead of a grid.

Where specs live: ``<project root>/sweeps`` (``project_root``), resolved when called, never at import, so a changed
working directory or ``$LAE_BENCH_ROOT`` is always seen. A bad key's error names its line in the TOML text
(``spec_error``)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import BenchError
from bench.registry import BUDGETS
from bench.sweep import checks, classifier_spec
from lae.config import EPOCHS, ConfigError, RunConfig

RUN_FIELDS = {f.name for f in dataclasses.fields(RunConfig)}
SPEC_KEYS = set(
    "description kind axis values dataset fixed models budget search pruner objective sampler_seed".split()  # noqa: SIM905
) | {"trial", "classifier"}  # trial = "classifier": the augmented-classifier sweep (bench.sweep.classifier_spec)
BUDGET_KEYS = {"train_size", "val_size", "epochs", "seeds", "metrics", "metric_settings", "values", "n_trials", "set"}
BUDGET_KEYS |= {"classifier"}  # trial = "classifier": the CNN's settings for this budget
MODEL_KEYS = {"model", "label", "axis", "set"}


def project_root() -> Path:
    """The checkout whose sweeps/ and git commit a run uses: $LAE_BENCH_ROOT, else the working directory
    when it holds sweeps/ (an installed package runs from the checkout, as tox does), else the source tree
    this module was loaded from."""
    if os.environ.get("LAE_BENCH_ROOT"):
        return Path(os.environ["LAE_BENCH_ROOT"]).resolve()
    if (Path.cwd() / "sweeps").is_dir():
        return Path.cwd().resolve()
    return Path(__file__).resolve().parents[2]


def sweeps_dir() -> Path:
    """The directory of the committed sweep specs: ``<project root>/sweeps``."""
    return project_root() / "sweeps"


def spec_names(directory: str | os.PathLike | None = None) -> list[str]:
    """The sweep names (``<name>.toml`` stems) in ``directory`` (default: sweeps_dir()), sorted."""
    return sorted(p.stem for p in Path(directory or sweeps_dir()).glob("*.toml"))


def find_spec(name: str, directory: str | os.PathLike | None = None) -> Path:
    """A sweep name (``<directory>/<name>.toml``, default directory sweeps_dir()) or a path to a .toml file."""
    if name.endswith(".toml") or os.sep in name:
        path = Path(name)
        if not path.is_file():
            raise BenchError(f"sweep spec {path} does not exist")
        return path
    directory = Path(directory or sweeps_dir())
    path = directory / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(spec_names(directory))
        if not known:
            raise BenchError(
                f"unknown sweep {name!r}: no sweep specs in {directory}; run from the lae-bench "
                "checkout or set LAE_BENCH_ROOT to it"
            )
        raise BenchError(f"unknown sweep {name!r}; known sweeps: {known}")
    return path


def line_of(text: str, table: str, key: str) -> str:
    """' (line N)' of ``key = ...`` inside ``[table]`` (or at the top level), '' when not found."""
    lines, inside = text.splitlines(), table == ""
    for i, line in enumerate(lines, 1):
        s = line.strip()
        if s.startswith("["):
            inside = s.strip("[] ") == table
        elif inside and re.match(rf"{re.escape(key)}\s*=", s):
            return f" (line {i})"
    return ""


def spec_error(path: Path, text: str, key: str, why: str, table: str = "") -> BenchError:
    """``<path> (line N): <key>: <why>``, the line of the key's last dotted part found inside ``[table]`` (an inline
    table's key: the line of its parent)."""
    parts = [p.split("[")[0] for p in key.split(".")]
    where = next((w for part in reversed(parts) if (w := line_of(text, table, part))), "")
    return BenchError(f"{path}{where}: {key}: {why}")


def params_key(params: dict) -> str:
    """A trial's params as canonical JSON: the grid's bookkeeping key and the row's ``params`` column."""
    return json.dumps(params, sort_keys=True)


def config_key(spec: Spec, budget: Budget, point, seed: int) -> str:
    """A fingerprint of what a grid trial runs: its RunConfig (but the data directory, and the dataset, which names the
    study), its axis value, the budget's metric preset and settings, the classifier's settings. A row holds it
    (``config_key``): a failed row is final only for the configuration that failed."""
    config = spec.config(point, budget, seed).to_dict()
    what = {k: v for k, v in config.items() if k not in ("data_dir", "dataset")}
    blob = [what, point.axis_value, budget.metrics, budget.metric_settings, spec.classifier, budget.classifier]
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Point:
    """One model configuration of a sweep: ``label`` names it in Optuna and the tables."""

    label: str
    variant: str  # the [[models]] label (e.g. "iwae (k = n_chains)")
    model: str
    overrides: dict  # RunConfig fields of this model entry, the axis value included
    axis_value: float | None  # the swept value this point belongs to (None: a flat baseline)


@dataclass(frozen=True)
class Budget:
    """One ``[budget.<name>]`` table: the trial sizes and the metric preset of a budget."""

    name: str  # one of bench.registry.BUDGETS
    epochs: int
    seeds: tuple[int, ...]
    metrics: str  # MetricSettings preset
    train_size: int | None = None  # images; None: the dataset's default split
    val_size: int | None = None
    metric_settings: dict = field(default_factory=dict)  # MetricSettings field overrides
    values: tuple | None = None  # grid values replacing the spec's (e.g. a 2-value smoke grid)
    n_trials: int | None = None  # tuning sweeps
    set: dict = field(default_factory=dict)  # RunConfig overrides for this budget
    classifier: dict = field(default_factory=dict)  # trial = "classifier": the CNN's settings for this budget


@dataclass(frozen=True)
class Spec:
    """A loaded sweep spec (``<name>.toml``): its models, grid or search space, and budgets by name."""

    name: str  # the file's stem
    path: Path
    kind: str  # "grid" | "tune"
    description: str
    axis: str  # grid: the swept LAE field; tune: the first searched field
    values: tuple
    dataset: str
    fixed: dict
    models: tuple[dict, ...]
    budgets: dict
    search: dict = field(default_factory=dict)  # tune: name -> {low, high, log}
    pruner: dict = field(default_factory=dict)  # tune: MedianPruner arguments
    sampler_seed: int = 0
    trial: str = "latent"  # what a trial trains: a latent model, or the augmented classifier (classifier_spec)
    classifier: dict = field(default_factory=dict)  # trial = "classifier": the CNN's settings

    def budget(self, name: str) -> Budget:
        if name not in self.budgets:
            raise BenchError(f"{self.path}: no budget {name!r}; this sweep has {', '.join(self.budgets)}")
        return self.budgets[name]

    def points(self, budget: Budget) -> list[Point]:
        values = budget.values if budget.values is not None else self.values
        if self.trial == "classifier":
            return [Point(*p) for p in classifier_spec.points(self.models, values)]
        out, following = [], [e["model"] for e in self.models if e.get("axis") is not None]
        for entry in self.models:
            label, axis = entry["label"], entry.get("axis")
            if self.kind == "tune" or axis is None:
                out.append(Point(label, label, entry["model"], dict(entry.get("set", {})), None))
                continue
            for v in values:  # "lae step_size=1e-05"; by label when two entries of one family follow the axis
                name = f"{label if following.count(entry['model']) > 1 else entry['model']} {axis}={v:g}"
                out.append(Point(name, label, entry["model"], {**entry.get("set", {}), axis: v}, v))
        return out

    def config(
        self,
        point: Point,
        budget: Budget,
        seed: int,
        dataset: str | None = None,
        data_dir: str | None = None,
        extra: dict | None = None,
    ) -> RunConfig:
        """The RunConfig of one trial: fixed < budget.set < budget sizes < model entry < axis value < extra."""
        sizes = {k: getattr(budget, k) for k in ("epochs", "train_size", "val_size") if getattr(budget, k) is not None}
        d = {
            **self.fixed,
            **budget.set,
            **sizes,
            **point.overrides,
            **(extra or {}),
            "model": point.model,
            "seed": seed,
            "dataset": dataset or self.dataset,
            "data_dir": data_dir,
        }
        return RunConfig.from_dict(d)

    def search_lows(self) -> dict:
        """Each searched field at its lower bound (a float, as suggested): a stand-in for the tuned values when
        checking configs."""
        return {k: float(d["low"]) for k, d in self.search.items()}


def load_spec(name: str, sweeps_dir: str | os.PathLike | None = None) -> Spec:
    """Find (``find_spec``), parse and validate a spec. Malformed TOML: BenchError with the file,
    line and column; bad keys or values: BenchError naming the file and key (and the line where it can be found)."""
    path = find_spec(name, sweeps_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:  # TOML is UTF-8
        raise BenchError(f"{path}: not UTF-8 text (byte {exc.start}); a sweep spec is TOML, which is UTF-8") from None
    spec = parse_spec(path, text)
    validate_spec(spec, text)
    return spec


def parse_spec(path: Path, text: str) -> Spec:
    """The TOML text of ``path`` as a Spec: known keys, kinds and types, every budget present."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BenchError(f"{path}: malformed TOML: {exc}") from None

    def bad(key: str, why: str, table: str = "") -> BenchError:
        return spec_error(path, text, key, why, table)

    for key in raw:
        if key not in SPEC_KEYS:
            raise bad(key, f"unknown key; expected one of {', '.join(sorted(SPEC_KEYS))}")
    kind = raw.get("kind", "grid")
    if kind not in ("grid", "tune"):
        raise bad("kind", f"must be 'grid' or 'tune', got {kind!r}")
    trial = classifier_spec.parse_trial(raw, kind, bad)
    for key in ("description", "dataset"):
        if not isinstance(raw.get(key, ""), str):
            raise bad(key, f"must be a string, got {raw[key]!r}")
    seed = raw.get("sampler_seed", 0)
    if not checks.is_count(seed, 0):
        raise bad("sampler_seed", f"must be a non-negative integer, got {seed!r}")
    fixed = checks.table(raw.get("fixed", {}), "fixed", bad)
    for key in fixed:
        if key not in RUN_FIELDS or key in ("model", "seed", "dataset", "data_dir"):
            raise bad(f"fixed.{key}", "not a settable RunConfig field", "fixed")
    models = _parse_models(raw.get("models", []), bad)
    axis, values = _parse_axis(kind, raw, bad, classifier_spec.axes(trial))
    budgets = {
        name: _parse_budget(name, checks.table(b, f"budget.{name}", bad), kind, bad)
        for name, b in checks.table(raw.get("budget", {}), "budget", bad).items()
    }
    missing = [b for b in BUDGETS if b not in budgets]
    if missing:
        raise bad("budget", f"missing [budget.{missing[0]}] (every spec defines {', '.join(BUDGETS)})")
    return Spec(
        path.stem,
        path,
        kind,
        raw.get("description", ""),
        axis,
        values,
        raw.get("dataset", "mnist"),
        dict(fixed),
        tuple(models),
        budgets,
        dict(raw.get("search", {})),
        checks.pruner(raw.get("pruner", {}), bad),
        seed,
        trial,
        classifier_spec.parse_settings(raw.get("classifier", {}), "classifier", bad, "classifier"),
    )


def _parse_models(entries: list, bad) -> list[dict]:
    """The ``[[models]]`` entries, each with a model and a label (default: its model), labels distinct."""
    if not isinstance(entries, list) or not entries:
        raise bad("models", "at least one [[models]] entry is required")
    models = []
    for i, entry in enumerate(entries):
        entry = checks.table(entry, f"models[{i}]", bad)
        unknown = set(entry) - MODEL_KEYS
        if unknown:
            raise bad(f"models[{i}].{sorted(unknown)[0]}", f"unknown key; expected {', '.join(sorted(MODEL_KEYS))}")
        if not isinstance(entry.get("model"), str) or not isinstance(entry.get("label", ""), str):
            raise bad(f"models[{i}].model", 'every [[models]] entry needs `model = "<family>"` (label: a string)')
        if entry.get("axis") is not None and entry["axis"] not in RUN_FIELDS:
            raise bad(f"models[{i}].axis", f"{entry['axis']!r} is not a RunConfig field")
        for key in checks.table(entry.get("set", {}), f"models[{i}].set", bad):
            if key not in RUN_FIELDS or key in ("model", "seed", "dataset", "data_dir"):
                raise bad(f"models[{i}].set.{key}", "not a settable RunConfig field")
        models.append({**entry, "label": entry.get("label", entry.get("model"))})
    if len({m["label"] for m in models}) != len(models):
        raise bad("models", "two [[models]] entries have the same label; give them distinct `label`s")
    return models


def _parse_axis(kind: str, raw: dict, bad, axes: set = RUN_FIELDS) -> tuple[str, tuple]:
    """(axis, values): a grid's swept field and values; a tuning sweep's first searched field and no values."""
    if kind == "grid":
        axis = raw.get("axis")
        if axis not in axes:
            raise bad("axis", f"must name a RunConfig field, got {axis!r}")
        return axis, checks.numbers(raw.get("values"), "values", bad)
    search = checks.search_space(raw.get("search", {}), RUN_FIELDS, bad)
    return next(iter(search)), ()


def _parse_budget(name: str, b: dict, kind: str, bad) -> Budget:
    """One ``[budget.<name>]`` table: a known budget name, known keys, positive counts, a known metric preset and
    valid metric settings (bench.sweep.checks)."""
    table = f"budget.{name}"
    if name not in BUDGETS:
        raise bad(table, f"unknown budget; expected {', '.join(BUDGETS)}")
    for key in b:
        if key not in BUDGET_KEYS:
            raise bad(f"{table}.{key}", f"unknown key; expected {', '.join(sorted(BUDGET_KEYS))}", table)
    for key in ("epochs", "seeds") + (("n_trials",) if kind == "tune" else ()):
        most = checks.MAX_TRIALS if key != "epochs" else EPOCHS.high  # seeds: a tuple of them is made below
        if not checks.is_count(b.get(key), 1, most):
            raise bad(f"{table}.{key}", f"must be a positive integer up to {most}, got {b.get(key)!r}", table)
    for key in ("train_size", "val_size"):
        if key in b and not checks.is_count(b[key]):
            raise bad(f"{table}.{key}", f"must be a positive integer, got {b[key]!r}", table)
    settings = checks.metric_settings(b, table, bad)
    for key in checks.table(b.get("set", {}), f"{table}.set", bad):
        if key not in RUN_FIELDS or key in ("model", "seed", "dataset", "data_dir"):
            raise bad(f"{table}.set.{key}", "not a settable RunConfig field", table)
    return Budget(
        name,
        b["epochs"],
        tuple(range(b["seeds"])),
        b["metrics"],
        b.get("train_size"),
        b.get("val_size"),
        settings,
        checks.numbers(b["values"], f"{table}.values", bad, table) if "values" in b else None,
        b.get("n_trials"),
        dict(b.get("set", {})),
        classifier_spec.parse_settings(b.get("classifier", {}), f"{table}.classifier", bad, table),
    )


def validate_spec(spec: Spec, text: str = "") -> None:
    """Every budget's points have distinct labels and every trial's RunConfig is valid, memory included (a tuning
    sweep's searched fields at their lower bounds). ``text``: the spec's TOML, to name the line of a bad key."""
    for budget in spec.budgets.values():
        labels = [p.label for p in spec.points(budget)]
        if len(labels) * len(budget.seeds) > checks.MAX_TRIALS and spec.kind == "grid":
            why = f"{len(labels)} points x {len(budget.seeds)} seeds is more than {checks.MAX_TRIALS} trials"
            raise spec_error(spec.path, text, f"budget.{budget.name}.seeds", why, f"budget.{budget.name}")
        if len(set(labels)) != len(labels):
            twice = max(labels, key=labels.count)
            raise spec_error(spec.path, text, "models", f"budget.{budget.name} has two points named {twice!r}")
        for point in spec.points(budget):
            try:
                spec.config(point, budget, 0, extra=spec.search_lows()).validate()
            except ConfigError as exc:
                key = checks.config_source(spec, budget, point, str(exc))
                table = key.rsplit(".", 1)[0].removesuffix(".set") if "." in key else ""
                raise spec_error(spec.path, text, key, f"{exc} ({point.label}, budget {budget.name})", table) from None
    classifier_spec.validate(spec, lambda key, why, table="": spec_error(spec.path, text, key, why, table))
