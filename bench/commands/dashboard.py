"""`python -m bench dashboard [STUDY ...]`: browse the studies of a results store in optuna-dashboard.

The published studies' journals are not committed (results/optuna/ is local state), but their parquet rows are: one
per finished trial, with its params, status and objective. This command rebuilds an Optuna storage from those rows
(in memory, or a file with --storage) and serves optuna-dashboard on it (`python -m pip install optuna-dashboard`).
Each trial keeps its number, params ({"point", "seed"} of the grid), state (complete, fail, pruned), value (the
objective the sweep minimised: the validation loss in nats per image; for the augmented classifier, the CNN's test
error 1 - clf_test_acc), start and end times, and every metric of its row as a user attribute (test_loglik_ais,
probe_acc, mh_accept, ...).

    python -m bench dashboard                                  # every study under results/, http://127.0.0.1:8080/
    python -m bench dashboard ald_stepsize --port 0            # one sweep's studies, on a free port
    python -m bench dashboard --storage studies.db --no-serve  # an SQLite copy: `optuna-dashboard sqlite:///studies.db`

A local study (a sweep run here, still running or not) is opened directly:
`optuna-dashboard results/optuna/NAME.journal`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import warnings
from pathlib import Path

from bench.errors import BenchError, check_output, path_arg, ranged
from lae.config import PORTS

ATTRS = ("point", "model", "mh_accept", "train_loss", "train_seconds", "epochs_run", "error", "git_commit")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "studies", nargs="*", metavar="STUDY", help="study (ald_stepsize.default.mnist) or sweep names (default: all)"
    )
    parser.add_argument(
        "--results", type=path_arg, default=Path("results"), help="results directory (default: results)"
    )
    parser.add_argument(
        "--storage",
        type=path_arg,
        default=None,
        help="also write the rebuilt studies to this new file: SQLite (.db, .sqlite, .sqlite3) or an Optuna journal "
        "(any other name) (default: in memory only)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default: 127.0.0.1)")
    parser.add_argument(
        "--port", type=ranged(PORTS), default=8080, help="port to serve on, 0..65535; 0: a free one (default: 8080)"
    )
    parser.add_argument("--no-serve", action="store_true", help="rebuild (with --storage) and exit")


def open_storage(path: Path | None):
    """A new, empty Optuna storage: in memory (None), SQLite (.db/.sqlite/.sqlite3) or a journal file."""
    import optuna

    if path is None:
        return optuna.storages.InMemoryStorage()
    if path.exists():
        raise BenchError(f"--storage {path} already exists; remove it or choose another path")
    check_output(path, "--storage", directory=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".db", ".sqlite", ".sqlite3"):
        return optuna.storages.RDBStorage(f"sqlite:///{path.absolute()}")
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


def distributions(params: list[dict]) -> dict:
    """Optuna distributions covering every row's params: floats -> FloatDistribution over their range (log scale
    when positive and spanning 100x), anything else (grid points, seeds) -> CategoricalDistribution."""
    import optuna

    out = {}
    for key in sorted({k for p in params for k in p}):
        values = sorted({p[key] for p in params if key in p}, key=lambda v: (str(type(v)), v))
        if all(isinstance(v, float) for v in values):
            log = values[0] > 0 and values[-1] >= 100 * values[0]
            out[key] = optuna.distributions.FloatDistribution(values[0], values[-1], log=log)
        else:
            out[key] = optuna.distributions.CategoricalDistribution(values)
    return out


# The objective a study's rows were minimised on: (metric name, value of one row, description).
LOSS = ("val_loss", lambda row: row.get("val_loss"), "validation loss, nats per image (lower is better)")
CLF_ERROR = (
    "clf_test_error",
    lambda row: 1.0 - row["clf_test_acc"] if _number(row.get("clf_test_acc")) else None,
    "the augmented classifier's test error 1 - clf_test_acc, a fraction (lower is better)",
)


def frozen_trial(row: dict, params: dict, dists: dict, objective=LOSS):
    """One results-store row as an Optuna FrozenTrial (see the module docstring); objective: LOSS or CLF_ERROR."""
    import optuna

    from bench.registry import EVAL_METRICS, METRICS

    state = {"complete": optuna.trial.TrialState.COMPLETE, "pruned": optuna.trial.TrialState.PRUNED}.get(
        row["status"], optuna.trial.TrialState.FAIL
    )
    value = objective[1](row)
    if state == optuna.trial.TrialState.COMPLETE and not (isinstance(value, float) and math.isfinite(value)):
        state = optuna.trial.TrialState.FAIL
    end = dt.datetime.fromisoformat(row["timestamp"]) if row.get("timestamp") else None
    seconds = sum(v for v in (row.get("train_seconds"), row.get("eval_seconds")) if _number(v))
    names = ATTRS + EVAL_METRICS + tuple(m.name for m in METRICS.values() if m.group == "classifier")
    attrs = {k: row[k] for k in names if k in row and (_number(row[k]) or isinstance(row[k], str))}
    return optuna.trial.FrozenTrial(
        number=int(row["trial"]),
        state=state,
        value=value if state == optuna.trial.TrialState.COMPLETE else None,
        datetime_start=end - dt.timedelta(seconds=seconds) if end else None,
        datetime_complete=end,
        params=params,
        distributions={k: dists[k] for k in params},
        user_attrs={k: (float(v) if _number(v) else v) for k, v in attrs.items()},
        system_attrs={},
        intermediate_values={},
        trial_id=0,
    )


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def find_studies(results: Path, names: list[str]) -> list[tuple[str, str]]:
    """(sweep, study) of every study directory under results/parquet named by `names` (a study or its sweep; none:
    all). BenchError (one line) for a name that matches nothing."""
    from bench.results import store

    base = store.parquet_dir(results)
    found = sorted((d.parent.name, d.name) for d in base.glob("*/*") if d.is_dir()) if base.is_dir() else []
    if not found:
        raise BenchError(f"no rows under {base}; run `python -m bench sweep NAME` first")
    unknown = [n for n in names if not any(n in pair for pair in found)]
    if unknown:
        held = ", ".join(study for _, study in found)
        raise BenchError(f"no study or sweep {', '.join(unknown)} in {results}; it holds {held}")
    return [pair for pair in found if not names or set(pair) & set(names)]


def rebuild(results: Path, studies: list[tuple[str, str]], storage) -> list[tuple[str, int]]:
    """Create each (sweep, study) in `storage` from its rows under results/parquet; -> [(study, trials)]."""
    import optuna

    from bench.results import classifier_board, store

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = []
    for sweep, name in studies:
        rows = store.read_rows(results, sweep, name).sort_values("trial")
        records = rows.to_dict("records")
        if not records:
            continue
        params = [json.loads(r["params"]) for r in records]
        dists = distributions(params)
        objective = CLF_ERROR if classifier_board.is_classifier(rows) else LOSS
        study = optuna.create_study(storage=storage, study_name=name, direction="minimize")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([objective[0]])
        study.set_user_attr("objective", objective[2])
        study.set_user_attr("rebuilt_from", str(store.parquet_dir(results, sweep) / name))
        study.add_trials([frozen_trial(r, p, dists, objective) for r, p in zip(records, params)])
        out.append((name, len(records)))
    return out


def serve(storage, host: str, port: int, studies: list[tuple[str, int]]) -> None:
    """optuna-dashboard's WSGI app on a threaded wsgiref server (quiet: no line per request) until Ctrl-C."""
    import socketserver
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from optuna_dashboard import wsgi

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args) -> None:
            pass

    class Threaded(socketserver.ThreadingMixIn, WSGIServer):
        daemon_threads = True

    try:
        server = make_server(host, port, wsgi(storage), server_class=Threaded, handler_class=Quiet)
    except OSError as exc:
        raise BenchError(f"cannot serve on {host}:{port}: {exc.strerror}; choose another --port (0: any)") from None
    url = f"http://{host}:{server.server_port}"
    for name, n in studies:
        print(f"{name}: {n} trials: {url}/dashboard/studies/{storage.get_study_id_from_name(name)}")
    print(f"optuna-dashboard: {url}/dashboard (Ctrl-C stops it)", flush=True)
    with server:
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print("dashboard stopped")


def run(args: argparse.Namespace) -> int:
    if not args.no_serve:
        try:
            import optuna_dashboard  # noqa: F401
        except ImportError:
            raise BenchError(
                "optuna-dashboard is not installed: python -m pip install optuna-dashboard "
                "(or write the studies with --storage FILE --no-serve and open them elsewhere)"
            ) from None
    elif args.storage is None:
        raise BenchError("--no-serve needs --storage FILE: the rebuilt studies would go nowhere")
    chosen = find_studies(args.results, args.studies)  # before anything is written
    storage = open_storage(args.storage)
    studies = rebuild(args.results, chosen, storage)
    if args.storage is not None:
        url = f"sqlite:///{args.storage}" if args.storage.suffix in (".db", ".sqlite", ".sqlite3") else args.storage
        print(f"{len(studies)} studies, {sum(n for _, n in studies)} trials written to {args.storage}")
        print(f"open them with: optuna-dashboard {url}")
    if not args.no_serve:
        serve(storage, args.host, args.port, studies)
    return 0
