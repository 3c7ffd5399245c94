"""Sweeps: a declarative TOML spec (``sweeps/<name>.toml``) run as one Optuna study, every trial recorded in the
results store (``bench.results.store``). See docs/sweeps.md for the spec format and the guarantees.

Spec -> points: a grid sweep varies one LAE field (``axis``) over ``values``; every ``[[models]]`` entry either takes
the value in one of its fields (``axis = "k"``: IWAE with k = n_chains, the compute-matched baseline) or, without
``axis``, is trained once per seed (a flat baseline). A *point* is one (model entry, value) pair, labelled e.g.
``"lae step_size=0.001"``; the Optuna grid is {point} x {seed}, run with GridSampler, so each point and seed runs once.
A tuning sweep (``kind = "tune"``) searches ``[search]`` with TPE and prunes with a median pruner fed the validation
loss (nats per image) after every epoch.

Study name: ``<sweep>.<budget>.<dataset>``. Default storage: a JournalStorage file ``<results>/optuna/<sweep>.journal``
(safe for several processes on one machine); any Optuna storage URL (``sqlite:///...``, ``postgresql://...``) works,
and workers on several machines running the same command with the same PostgreSQL URL share the study.

Resume: every running trial records its host and pid and beats a heartbeat (a system attribute, every
``HEARTBEAT_S``). A RUNNING trial whose process is gone (same host, pid not alive) or whose heartbeat is older than
``GRACE_S`` is *stale*: its params are enqueued again and it is marked FAIL (system attr ``lae:stale``). A trial
whose params are already complete, or running in an older live trial, is a *duplicate* (GridSampler can hand out
the same point to two workers in a race): it is marked FAIL (``lae:duplicate``) without training. Grid bookkeeping
is by params, so nothing completed is run twice and nothing is lost.
"""
from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import os
import platform
import re
import socket
import subprocess
import sys
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from lae.config import ConfigError, RunConfig

from bench.results import store
from bench.errors import BenchError



def project_root() -> Path:
    """The checkout whose sweeps/ and git commit a run uses: $LAE_BENCH_ROOT, else the working directory
    when it holds sweeps/ (an installed package runs from the checkout, as tox does), else the source tree
    this module was loaded from."""
    if os.environ.get("LAE_BENCH_ROOT"):
        return Path(os.environ["LAE_BENCH_ROOT"]).resolve()
    if (Path.cwd() / "sweeps").is_dir():
        return Path.cwd().resolve()
    return Path(__file__).resolve().parents[2]


ROOT = project_root()
SWEEPS_DIR = ROOT / "sweeps"
BUDGETS = ("smoke", "default", "full")
HEARTBEAT_S = float(os.environ.get("LAE_BENCH_HEARTBEAT_S", 20))  # seconds between heartbeats of a running trial
GRACE_S = float(os.environ.get("LAE_BENCH_GRACE_S", 300))  # a heartbeat older than this marks a trial stale
RUN_FIELDS = {f.name for f in dataclasses.fields(RunConfig)}
SPEC_KEYS = {"description", "kind", "axis", "values", "dataset", "fixed", "models", "budget", "search", "pruner",
             "objective", "sampler_seed"}
BUDGET_KEYS = {"train_size", "val_size", "epochs", "seeds", "metrics", "metric_settings", "values", "n_trials", "set"}
MODEL_KEYS = {"model", "label", "axis", "set"}


# ------------------------------------------------------------------------------------------------------------ spec
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
    name: str
    epochs: int
    seeds: tuple[int, ...]
    metrics: str  # MetricSettings preset
    train_size: int | None = None
    val_size: int | None = None
    metric_settings: dict = field(default_factory=dict)  # MetricSettings field overrides
    values: tuple | None = None  # grid values replacing the spec's (e.g. a 2-value smoke grid)
    n_trials: int | None = None  # tuning sweeps
    set: dict = field(default_factory=dict)  # RunConfig overrides for this budget


@dataclass(frozen=True)
class Spec:
    name: str
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

    def budget(self, name: str) -> Budget:
        if name not in self.budgets:
            raise BenchError(f"{self.path}: no budget {name!r}; this sweep has {', '.join(self.budgets)}")
        return self.budgets[name]

    def points(self, budget: Budget) -> list[Point]:
        values = budget.values if budget.values is not None else self.values
        out = []
        for entry in self.models:
            label, axis = entry["label"], entry.get("axis")
            if self.kind == "tune" or axis is None:
                out.append(Point(label, label, entry["model"], dict(entry.get("set", {})), None))
                continue
            for v in values:
                name = f"{entry['model']} {axis}={v:g}"
                out.append(Point(name, label, entry["model"], {**entry.get("set", {}), axis: v}, v))
        return out

    def config(self, point: Point, budget: Budget, seed: int, dataset: str | None = None,
               data_dir: str | None = None, extra: dict | None = None) -> RunConfig:
        """The RunConfig of one trial: fixed < budget.set < budget sizes < model entry < axis value < extra."""
        sizes = {k: getattr(budget, k) for k in ("epochs", "train_size", "val_size") if getattr(budget, k) is not None}
        d = {**self.fixed, **budget.set, **sizes, **point.overrides, **(extra or {}), "model": point.model,
             "seed": seed, "dataset": dataset or self.dataset, "data_dir": data_dir}
        return RunConfig.from_dict(d)


def spec_names(sweeps_dir: Path = SWEEPS_DIR) -> list[str]:
    return sorted(p.stem for p in Path(sweeps_dir).glob("*.toml"))


def find_spec(name: str, sweeps_dir: Path = SWEEPS_DIR) -> Path:
    """A sweep name (``sweeps/<name>.toml``) or a path to a .toml file."""
    if name.endswith(".toml") or os.sep in name:
        path = Path(name)
        if not path.is_file():
            raise BenchError(f"sweep spec {path} does not exist")
        return path
    path = Path(sweeps_dir) / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(spec_names(sweeps_dir))
        if not known:
            raise BenchError(f"unknown sweep {name!r}: no sweep specs in {sweeps_dir}; run from the lae-bench "
                             "checkout or set LAE_BENCH_ROOT to it")
        raise BenchError(f"unknown sweep {name!r}; known sweeps: {known}")
    return path


def _line_of(text: str, table: str, key: str) -> str:
    """' (line N)' of ``key = ...`` inside ``[table]`` (or at the top level), '' when not found."""
    lines, inside = text.splitlines(), table == ""
    for i, line in enumerate(lines, 1):
        s = line.strip()
        if s.startswith("["):
            inside = s.strip("[] ") == table
        elif inside and re.match(rf"{re.escape(key)}\s*=", s):
            return f" (line {i})"
    return ""


def load_spec(name: str, sweeps_dir: Path = SWEEPS_DIR) -> Spec:
    """Read and check a spec. Malformed TOML: BenchError with the file, line and column; bad keys or values:
    BenchError naming the file and key. Every trial's RunConfig is validated here, before anything trains."""
    path = find_spec(name, sweeps_dir)
    text = path.read_text()
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BenchError(f"{path}: malformed TOML: {exc}") from None

    def bad(key: str, why: str, table: str = ""):
        where = _line_of(text, table, key.rsplit(".", 1)[-1])
        return BenchError(f"{path}{where}: {key}: {why}")

    for key in raw:
        if key not in SPEC_KEYS:
            raise bad(key, f"unknown key; expected one of {', '.join(sorted(SPEC_KEYS))}")
    kind = raw.get("kind", "grid")
    if kind not in ("grid", "tune"):
        raise bad("kind", f"must be 'grid' or 'tune', got {kind!r}")
    fixed = raw.get("fixed", {})
    for key in fixed:
        if key not in RUN_FIELDS or key in ("model", "seed", "dataset", "data_dir"):
            raise bad(f"fixed.{key}", "not a settable RunConfig field", "fixed")
    models = []
    for i, entry in enumerate(raw.get("models", [])):
        unknown = set(entry) - MODEL_KEYS
        if unknown:
            raise bad(f"models[{i}].{sorted(unknown)[0]}", f"unknown key; expected {', '.join(sorted(MODEL_KEYS))}")
        if entry.get("axis") is not None and entry["axis"] not in RUN_FIELDS:
            raise bad(f"models[{i}].axis", f"{entry['axis']!r} is not a RunConfig field")
        for key in entry.get("set", {}):
            if key not in RUN_FIELDS:
                raise bad(f"models[{i}].set.{key}", "not a RunConfig field")
        models.append({**entry, "label": entry.get("label", entry.get("model"))})
    if not models:
        raise bad("models", "at least one [[models]] entry is required")
    if len({m["label"] for m in models}) != len(models):
        raise bad("models", "two [[models]] entries have the same label; give them distinct `label`s")

    search = raw.get("search", {})
    if kind == "grid":
        axis, values = raw.get("axis"), raw.get("values")
        if axis not in RUN_FIELDS:
            raise bad("axis", f"must name a RunConfig field, got {axis!r}")
        if not isinstance(values, list) or not values:
            raise bad("values", "must be a non-empty list")
    else:
        if not search:
            raise bad("search", "a tuning sweep needs a [search.<field>] table with low, high (and log)")
        for key, dist in search.items():
            if key not in RUN_FIELDS or not {"low", "high"} <= set(dist) or not dist["low"] < dist["high"]:
                raise bad(f"search.{key}", "needs a RunConfig field with low < high", f"search.{key}")
        axis, values = next(iter(search)), []

    budgets = {}
    for bname, b in raw.get("budget", {}).items():
        table = f"budget.{bname}"
        if bname not in BUDGETS:
            raise bad(table, f"unknown budget; expected {', '.join(BUDGETS)}")
        for key in b:
            if key not in BUDGET_KEYS:
                raise bad(f"{table}.{key}", f"unknown key; expected {', '.join(sorted(BUDGET_KEYS))}", table)
        for key in ("epochs", "seeds") + (("n_trials",) if kind == "tune" else ()):
            if not isinstance(b.get(key), int) or isinstance(b.get(key), bool) or b[key] < 1:
                raise bad(f"{table}.{key}", f"must be a positive integer, got {b.get(key)!r}", table)
        if not isinstance(b.get("metrics"), str):
            raise bad(f"{table}.metrics", "must name a metric preset (smoke, default, full)", table)
        if "values" in b and (not isinstance(b["values"], list) or not b["values"]):
            raise bad(f"{table}.values", "must be a non-empty list", table)
        budgets[bname] = Budget(bname, b["epochs"], tuple(range(b["seeds"])), b["metrics"], b.get("train_size"),
                                b.get("val_size"), dict(b.get("metric_settings", {})),
                                tuple(b["values"]) if "values" in b else None, b.get("n_trials"), dict(b.get("set", {})))
    missing = [b for b in BUDGETS if b not in budgets]
    if missing:
        raise bad("budget", f"missing [budget.{missing[0]}] (every spec defines {', '.join(BUDGETS)})")

    spec = Spec(path.stem, path, kind, raw.get("description", ""), axis, tuple(values), raw.get("dataset", "mnist"),
                dict(fixed), tuple(models), budgets, dict(search), dict(raw.get("pruner", {})),
                int(raw.get("sampler_seed", 0)))
    for budget in budgets.values():  # every trial's config is valid before anything trains
        labels = [p.label for p in spec.points(budget)]
        if len(set(labels)) != len(labels):
            raise bad("models", f"budget.{budget.name} has two points named {max(labels, key=labels.count)!r}")
        for point in spec.points(budget):
            extra = {k: d["low"] for k, d in search.items()}
            try:
                spec.config(point, budget, 0, extra=extra).validate()
            except ConfigError as exc:
                raise BenchError(f"{path}: budget.{budget.name}, {point.label}: {exc}") from None
    return spec


# --------------------------------------------------------------------------------------------------------- storage
def default_storage(results: Path, sweep: str) -> str:
    return f"journal:{Path(results) / 'optuna' / f'{sweep}.journal'}"


def open_storage(url: str):
    """An Optuna storage from a URL: ``journal:<path>`` (JournalStorage, file backend) or any RDB URL. Failures
    (bad URL, missing driver, unreachable server) are one BenchError line with the password redacted."""
    import optuna

    secret = (store.url_password(url),)
    try:
        if url.startswith("journal:"):
            path = Path(url[len("journal:"):])
            path.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
        kwargs = {"connect_args": {"connect_timeout": 10}} if url.startswith("postgres") else {}
        for attempt in range(5):
            try:
                return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
            except Exception as exc:  # noqa: BLE001
                # Workers started together on a fresh database race to create Optuna's tables; the loser sees a
                # unique-key violation or an existing table, and a retry finds the tables in place.
                if attempt == 4 or not re.search(r"UniqueViolation|already exists|IntegrityError|DuplicateTable",
                                                 f"{type(exc).__name__} {exc}"):
                    raise
                time.sleep(0.5 + attempt)
    except Exception as exc:  # noqa: BLE001 - every storage failure becomes one line
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        reason = next((ln for ln in lines if not ln.startswith("(Background")), type(exc).__name__)
        raise BenchError(f"cannot open storage {store.redact_url(url)}: {store.redact_text(reason, secret)}") from None


# ------------------------------------------------------------------------------------------------------- the study
@dataclass
class Job:
    """Everything a worker process needs (picklable)."""
    spec_path: str
    budget: str
    storage_url: str
    results: str
    dataset: str
    data_dir: str | None
    threads: int
    worker: int = 0
    progress: bool = True


def study_name(spec: Spec, budget: str, dataset: str) -> str:
    return f"{spec.name}.{budget}.{dataset}"


def params_key(params: dict) -> str:
    return json.dumps(params, sort_keys=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(trial, now: float | None = None) -> bool:
    """A RUNNING trial whose worker is gone: same host and dead pid, or no heartbeat for GRACE_S seconds."""
    attrs = trial.system_attrs
    if attrs.get("lae:host") == socket.gethostname() and "lae:pid" in attrs and not _pid_alive(attrs["lae:pid"]):
        return True
    beat = attrs.get("lae:heartbeat") or (trial.datetime_start.timestamp() if trial.datetime_start else None)
    return beat is not None and (now or time.time()) - beat > GRACE_S


def reap_stale(study) -> int:
    """Enqueue the params of every stale RUNNING trial again, then mark it FAIL. Returns how many were reaped."""
    import optuna
    from optuna.trial import TrialState

    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not is_stale(t):
            continue
        study.enqueue_trial(t.params, user_attrs={"lae:rerun_of": t.number})
        try:
            study._storage.set_trial_system_attr(t._trial_id, "lae:stale", "worker died (stale heartbeat)")
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            n += 1
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
            pass  # another worker reaped it first
    return n


def _classify(study):
    """-> (done keys, live running keys, number of waiting trials, list of counted finished trials)."""
    from optuna.trial import TrialState

    done, live, waiting, finished = set(), {}, 0, []
    for t in study.get_trials(deepcopy=False):
        attrs = t.system_attrs
        if t.state == TrialState.WAITING:
            waiting += 1
        elif t.state == TrialState.RUNNING and t.params:
            live.setdefault(params_key(t.params), t.number)
        elif t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (t.state == TrialState.FAIL and "lae:final" in attrs):
            done.add(params_key(t.params))
            finished.append(t)
    return done, live, waiting, finished


class Heartbeat:
    """Sets system attr ``lae:heartbeat`` (Unix seconds) of a running trial every HEARTBEAT_S, in a thread."""

    def __init__(self, storage, trial_id: int):
        self.storage, self.trial_id, self.stop_event = storage, trial_id, threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self):
        while not self.stop_event.wait(HEARTBEAT_S):
            try:
                self.storage.set_trial_system_attr(self.trial_id, "lae:heartbeat", time.time())
            except Exception:  # noqa: BLE001 - finished meanwhile, or a transient storage error
                pass

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join()


_PROVENANCE: dict = {}


def provenance() -> dict:
    """Git commit (+dirty), package versions and the machine, computed once per process."""
    if not _PROVENANCE:
        import numpy
        import optuna
        import torch

        def git(*args):
            try:
                return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
            except (OSError, subprocess.SubprocessError):
                return None

        head = git("rev-parse", "HEAD")
        commit = head.stdout.strip() if head is not None and head.returncode == 0 else "unknown"
        diff = git("diff", "--quiet", "HEAD", "--", "lae", "bench")
        if commit != "unknown" and diff is not None and diff.returncode == 1:
            commit += "+dirty"
        cpu = platform.processor() or platform.machine()
        try:
            cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
        except (OSError, StopIteration):
            pass
        from importlib.metadata import PackageNotFoundError, version
        try:
            own = version("lae-bench")
        except PackageNotFoundError:
            own = "source"
        _PROVENANCE.update(git_commit=commit, python_version=platform.python_version(), torch_version=torch.__version__,
                           optuna_version=optuna.__version__, numpy_version=numpy.__version__, lae_bench_version=own,
                           machine=f"{platform.machine()} {cpu}")
    return dict(_PROVENANCE)


def grid_sampler(search_space: dict, seed: int = 0):
    """Optuna's GridSampler without its study.stop() in after_trial: we drive the study with ask/tell (stop() raises
    outside optimize()) and stop by our own bookkeeping."""
    import optuna

    class GridSampler(optuna.samplers.GridSampler):
        def after_trial(self, study, trial, state, values):
            pass

    return GridSampler(search_space, seed=seed)


def _settings(budget: Budget):
    from bench.metrics import MetricSettings

    settings = MetricSettings.preset(budget.metrics)
    try:
        return dataclasses.replace(settings, **budget.metric_settings)
    except TypeError as exc:
        raise BenchError(f"budget {budget.name}: metric_settings: {exc}") from None


def create_study(spec: Spec, job: Job, storage):
    import optuna

    budget = spec.budget(job.budget)
    if spec.kind == "grid":
        space = {"point": [p.label for p in spec.points(budget)], "seed": list(budget.seeds)}
        sampler = grid_sampler(space, seed=spec.sampler_seed)
        pruner = optuna.pruners.NopPruner()
    else:
        sampler = optuna.samplers.TPESampler(seed=spec.sampler_seed + job.worker,
                                             n_startup_trials=int(spec.pruner.get("n_startup_trials", 5)))
        pruner = optuna.pruners.MedianPruner(**spec.pruner)
    return optuna.create_study(study_name=study_name(spec, job.budget, job.dataset), storage=storage, sampler=sampler,
                               pruner=pruner, direction="minimize", load_if_exists=True)


def run_worker(job: Job) -> int:
    """One worker: ask, train, measure, record, tell, until the study has nothing left. Returns trials run."""
    import optuna
    import torch
    from optuna.trial import TrialState

    from lae.train import load_data

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(job.threads)
    spec, storage = load_spec(job.spec_path), open_storage(job.storage_url)
    budget = spec.budget(job.budget)
    study = create_study(spec, job, storage)
    points = {p.label: p for p in spec.points(budget)}
    grid = [params_key({"point": p, "seed": s}) for p in points for s in budget.seeds]
    total = len(grid) if spec.kind == "grid" else budget.n_trials
    settings = _settings(budget)
    datasets: dict = {}
    n_run = 0
    while True:
        reap_stale(study)
        done, live, waiting, finished = _classify(study)
        if spec.kind == "grid":
            remaining = [k for k in grid if k not in done and k not in live]
        else:
            remaining = range(max(0, budget.n_trials - len(finished) - len(live)))
        if not remaining and not waiting:
            return n_run
        trial = study.ask()
        if spec.kind == "grid":
            params = {"point": trial.suggest_categorical("point", list(points)),
                      "seed": trial.suggest_categorical("seed", list(budget.seeds))}
        else:
            params = {k: trial.suggest_float(k, float(d["low"]), float(d["high"]), log=bool(d.get("log", False)))
                      for k, d in spec.search.items()}
        key = params_key(params)
        done, live, _, _ = _classify(study)
        older = live.get(key)
        if key in done or (older is not None and older < trial.number) or (spec.kind == "grid" and key not in grid):
            study._storage.set_trial_system_attr(trial._trial_id, "lae:duplicate", "params done or running elsewhere")
            study.tell(trial, state=TrialState.FAIL)
            continue
        for name, value in (("lae:host", socket.gethostname()), ("lae:pid", os.getpid()),
                            ("lae:heartbeat", time.time()), ("lae:worker", job.worker)):
            study._storage.set_trial_system_attr(trial._trial_id, name, value)
        if spec.kind == "grid":
            point, seed, extra = points[params["point"]], params["seed"], {}
        else:
            point, seed, extra = next(iter(points.values())), budget.seeds[0], params
        config = spec.config(point, budget, seed, job.dataset, job.data_dir, extra)
        data_key = (config.dataset, config.preprocessing, config.train_size, config.val_size)
        if data_key not in datasets:
            datasets[data_key] = load_data(config)
        with Heartbeat(storage, trial._trial_id):
            row, value = run_trial(spec, budget, point, config, datasets[data_key], settings, trial, job)
        store.write_row(job.results, row)  # the row first: a kill before tell() reruns the trial, never loses it
        if row["status"] == "complete":
            study.tell(trial, value)
        elif row["status"] == "pruned":
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study._storage.set_trial_system_attr(trial._trial_id, "lae:final", row["error"] or "failed")
            study.tell(trial, state=TrialState.FAIL)
        n_run += 1
        if job.progress:
            n_done = len(_classify(study)[3])
            print(progress_line(spec, row, n_done, total, job.worker), flush=True)


def run_trial(spec: Spec, budget: Budget, point: Point, config: RunConfig, dataset, settings, trial, job: Job):
    """Train, measure and build one row. Divergence and other trial errors become status 'fail' with the reason."""
    import optuna
    import torch

    from bench.metrics import METRIC_NAMES, compute_metrics
    from lae.train import DivergenceError, fit

    row = {name: math.nan for name in METRIC_NAMES}
    status, error, value, result, epochs_run, last_val = "complete", None, None, None, 0, math.nan

    def on_epoch(epoch: int, val: float):
        nonlocal epochs_run, last_val
        epochs_run, last_val = epoch, val
        if spec.kind == "tune":
            trial.report(val, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch} (validation loss {val:.2f} nats)")

    start = time.perf_counter()
    try:
        result = fit(config, dataset, on_epoch=on_epoch)
        value = result.val_loss[-1]
        gen = torch.Generator().manual_seed(config.seed + 1_000_003)
        t0 = time.perf_counter()
        metrics = compute_metrics(result.model, config, dataset, settings=settings, generator=gen, progress=False)
        row.update({k: float(v) for k, v in metrics.items()})
        row["eval_seconds"] = float(metrics.get("eval_seconds", time.perf_counter() - t0))
    except optuna.TrialPruned as exc:
        status, error = "pruned", str(exc)
    except DivergenceError as exc:
        status, error = "fail", f"diverged: {exc}"
    except Exception as exc:  # noqa: BLE001 - one failed trial must not stop the sweep
        status, error = "fail", f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    train_seconds = result.seconds if result is not None else time.perf_counter() - start
    cfg = config.to_dict()
    cfg.pop("data_dir")
    row.update(cfg)
    row.update(
        schema_version=store.SCHEMA_VERSION, sweep=spec.name, study=trial.study.study_name, budget=budget.name,
        trial=trial.number, params=params_key(trial.params), point=point.label, variant=point.variant,
        axis=spec.axis, axis_value=float(point.axis_value if point.axis_value is not None else
                                         trial.params.get(spec.axis, math.nan)),
        likelihood=config.likelihood, status=status, error=error,
        val_loss=float(result.val_loss[-1]) if result is not None else last_val,
        train_loss=float(result.train_loss[-1]) if result is not None and result.train_loss else math.nan,
        mh_accept=float(result.accept[-1]) if result is not None and result.accept else math.nan,
        epochs_run=result.config.epochs if result is not None else epochs_run,
        train_seconds=float(train_seconds), threads=torch.get_num_threads(),
        storage=store.redact_url(job.storage_url), worker=f"{socket.gethostname()}:{os.getpid()}/{job.worker}",
        **provenance())
    row["decoder_depth"] = config.dec_depth  # train_size / val_size stay null: the dataset's default split
    return row, value


def progress_line(spec: Spec, row: dict, n_done: int, total: int, worker: int) -> str:
    what = row["point"] if spec.kind == "grid" else f"{spec.axis}={row['axis_value']:.3g}"
    head = f"[{spec.name} {n_done}/{total}] {what} seed={row['seed']}: {row['status']}"
    if row["status"] == "fail":
        return f"{head} ({row['error']}) (worker {worker})"
    ll = row.get("test_loglik_ais", math.nan)
    return (f"{head}, val {row['val_loss']:.2f} nats, test log-lik (AIS) {ll:.2f}, "
            f"{row['train_seconds']:.1f} s train + {row.get('eval_seconds', math.nan):.1f} s eval (worker {worker})")


def _check_data(spec: Spec, budget: Budget, dataset: str, data_dir: str | None) -> None:
    """Load each distinct dataset of the budget once, so a missing file or an impossible subset size is reported
    (DataError, one line) before any worker starts."""
    from lae.train import load_data

    seen = set()
    for point in spec.points(budget):
        config = spec.config(point, budget, 0, dataset, data_dir, {k: d["low"] for k, d in spec.search.items()})
        key = (config.dataset, config.preprocessing, config.train_size, config.val_size)
        if key not in seen:
            seen.add(key)
            load_data(config)


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel SIGKILLs this worker when the process that spawned it dies (kill -9 of the command kills
    its workers too; their RUNNING trials become stale and the next run reruns them)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _worker_entry(job: Job, parent: int) -> None:
    _die_with_parent(parent)
    try:
        run_worker(job)
    except BenchError as exc:
        print(f"error: worker {job.worker}: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def run_sweep(name: str, budget: str = "smoke", storage: str | None = None, workers: int = 1,
              results: str | os.PathLike = "results", dataset: str | None = None, data_dir: str | None = None,
              progress: bool = True, sweeps_dir: Path = SWEEPS_DIR, threads: int | None = None) -> dict:
    """Run (or resume) one sweep with ``workers`` processes on this machine, torch threads divided between them
    (``threads`` per worker overrides: default max(1, cores // workers)).
    Returns a summary: study, storage (redacted), seconds, and trial counts by status."""
    if not isinstance(workers, int) or workers < 1:
        raise BenchError(f"--workers must be a positive integer, got {workers!r}")
    spec = load_spec(name, sweeps_dir)
    spec.budget(budget)
    dataset = dataset or spec.dataset
    RunConfig(dataset=dataset).validate()
    results = Path(results)
    storage = storage or default_storage(results, spec.name)
    _settings(spec.budget(budget))  # unknown metric preset or settings: before anything trains
    _check_data(spec, spec.budget(budget), dataset, data_dir)  # missing files, subset sizes: one line, here
    open_storage(storage)  # unreachable storage: one line, before anything trains
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise BenchError(f"--threads must be a positive integer, got {threads!r}")
    threads = threads or max(1, cpu_count() // workers)
    jobs = [Job(str(spec.path), budget, storage, str(results), dataset, data_dir, threads, i, progress)
            for i in range(workers)]
    start = time.perf_counter()
    # Workers are fresh processes (spawn), also when there is one: OpenMP reads OMP_WAIT_POLICY when torch loads,
    # and its default busy-waiting makes 2-thread training ~20x slower on a machine whose cores are shared.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker_entry, args=(job, os.getpid()), name=f"sweep-worker-{job.worker}")
             for job in jobs]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        raise
    bad = [p for p in procs if p.exitcode != 0]
    if bad:
        raise BenchError(f"{len(bad)} of {workers} worker(s) failed (exit codes "
                         f"{', '.join(str(p.exitcode) for p in bad)}); rerun the same command to resume")
    return summarize(spec, budget, storage, dataset, time.perf_counter() - start)


def summarize(spec: Spec, budget: str, storage: str, dataset: str, seconds: float) -> dict:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name(spec, budget, dataset), storage=open_storage(storage))
    counts: dict = {}
    for t in study.get_trials(deepcopy=False):
        kind = ("duplicate" if "lae:duplicate" in t.system_attrs else "stale" if "lae:stale" in t.system_attrs
                else t.state.name.lower())
        counts[kind] = counts.get(kind, 0) + 1
    return {"sweep": spec.name, "study": study.study_name, "storage": store.redact_url(storage),
            "seconds": seconds, "trials": counts}
