"""Which study of a sweep a leaderboard shows, the name its table gets (bench.results.leaderboard's docstring),
where its rows came from, and the index page of the tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.registry import BUDGETS, DATASETS
from bench.results import store
from lae.utils import atomic_write_text

BUDGET_RANK = {b: i for i, b in enumerate(reversed(BUDGETS))}  # the largest budget first: full, default, smoke


def pick_study(rows: pd.DataFrame, budget: str | None = None, dataset: str | None = None) -> str | None:
    """The study a sweep's leaderboard shows (see the module docstring); None when no row matches."""
    rows = rows if budget is None else rows[rows["budget"] == budget]
    rows = rows if dataset is None else rows[rows["dataset"] == dataset]
    if rows.empty:
        return None
    counts = rows.groupby(["study", "budget", "dataset"]).size().reset_index(name="n")
    counts["rank"] = counts["budget"].map(BUDGET_RANK).fillna(9)
    counts["order"] = counts["dataset"].map({d: i for i, d in enumerate(DATASETS)}).fillna(len(DATASETS))
    return counts.sort_values(["rank", "order", "n"], ascending=[True, True, False]).iloc[0]["study"]


def other_datasets(rows: pd.DataFrame, shown: str) -> list[str]:
    """The studies beside `shown` at its budget on other datasets (each gets its own table, `<sweep>.<dataset>`),
    one per dataset (pick_study), in the registry's dataset order."""
    first = rows[rows["study"] == shown].iloc[0]
    same = rows[(rows["budget"] == first["budget"]) & (rows["dataset"] != first["dataset"])]
    return [pick_study(same, dataset=d) for d in DATASETS if d in set(same["dataset"])]


def board_name(rows: pd.DataFrame, sweep: str, study: str) -> str:
    """A study's table and figures name: the sweep's own for the dataset its default table shows (pick_study), else
    `<sweep>.<dataset>` (ald_stepsize.fashion-mnist), so another dataset's study never replaces the default table."""
    dataset = rows.loc[rows["study"] == study, "dataset"].iloc[0]
    primary = rows.loc[rows["study"] == pick_study(rows), "dataset"].iloc[0]
    return sweep if dataset == primary else f"{sweep}.{dataset}"


def tally(values: pd.Series, bare_if_one: bool = False) -> str:
    """Each distinct value with its count of rows, most rows first: 'fcb684a (11 rows), 3bb80d9 (4 rows)'; with
    bare_if_one, a value every row shares is named alone ('AMD EPYC')."""
    counts = values.fillna("unknown").value_counts(sort=False).sort_values(ascending=False, kind="stable")
    if bare_if_one and len(counts) == 1:
        return str(counts.index[0])
    return ", ".join(f"{c} ({n} row{'s' if n > 1 else ''})" for c, n in counts.items())


def provenance(rows: pd.DataFrame) -> str:
    """Every commit the rows were made at with its count of rows (tally), then the threads per trial and the machines
    (named alone where every row shares them), so that a study run on two CPUs says so: 'cd9a9aa (10 rows), a264273
    (11 rows); 1 thread(s) per trial on x86_64 AMD EPYC (10 rows), x86_64 Intel(R) Xeon(R) Processor (11 rows)'."""
    short = rows["git_commit"].fillna("unknown").map(lambda c: c[:7] + c[40:] if len(c) >= 40 else c)  # keeps +dirty
    threads = tally(rows["threads"].map(lambda t: str(int(t)) if pd.notna(t) else None), bare_if_one=True)
    return f"{tally(short)}; {threads} thread(s) per trial on {tally(rows['machine'], bare_if_one=True)}"


def write_index(results: Path, made: dict[str, str] | None = None) -> Path:
    """The index page ``<results>/leaderboards/README.md``: one line per sweep table, with where its rows came from
    (provenance), so that one page says which commits and machines made every published study. ``made``: study ->
    provenance already known to the caller (the studies it just built); the other studies' rows are read here."""
    made = dict(made or {})
    out = Path(results) / "leaderboards"
    lines = [
        "# Leaderboards",
        "",
        "One table per sweep (rebuilt by `python -m bench leaderboard`); the runs and the exact "
        "commands are in [`results/README.md`](../README.md).",
        "",
        "| sweep | study | trials | made at (commits; threads; machines) | table | figures |",
        "|---|---|---:|---|---|---|",
    ]
    for csv in sorted(out.glob("*.csv")):
        table = pd.read_csv(csv)
        if table.empty:
            continue
        board, study = csv.stem, table["study"].iloc[0]
        n = int(table["n_seeds"].sum() + table["n_failed"].sum() + table["n_pruned"].sum())
        if study not in made:  # a board built earlier: its rows (a study is named <sweep>.<budget>.<dataset>)
            rows = store.read_rows(results, study.split(".")[0], study)
            made[study] = provenance(rows) if len(rows) else "no rows"
        lines.append(
            f"| {board} | `{study}` | {n} | {made[study]} | [{board}.md]({board}.md) ([csv]({board}.csv)) | "
            f"[figures](../figures/{board}/) |"
        )
    path = out / "README.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
