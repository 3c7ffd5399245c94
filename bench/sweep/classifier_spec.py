"""The augmented-classifier part of a sweep spec (``trial = "classifier"``, docs/sweeps.md): the CNN's settings
(``[classifier]``, overridden per budget by ``classifier = {...}``), the points and the checks. bench.sweep.spec calls
these; bench.sweep.classifier runs the trials.

Points: the grid's axis is ``n_augment`` (N, the decoded posterior images per training image). Every ``[[models]]``
entry is a DLVM, crossed with each N > 0 (``"lae n_augment=2"``); N = 0 is one point shared by all (``"none
n_augment=0"``: no DLVM; its RunConfig, the first entry's, only names the data). A DLVM's RunConfig is the spec's as
in any grid sweep (fixed < budget < entry), its epochs the budget's ``epochs``."""

from __future__ import annotations

import dataclasses

from bench.metrics.settings import MetricSettings
from bench.registry import CLF_EPS
from bench.sweep import checks
from lae.classifier import ClassifierConfig, ClassifierError
from lae.config import RunConfig

AXIS = "n_augment"
TRIALS = ("latent", "classifier")  # what a trial trains: a latent model (every other sweep), or the CNN
SETTINGS = ("lr", "batch_size", "epochs")  # the ClassifierConfig fields a spec sets
NONE = "none"  # the variant of the N = 0 point
DATASETS = ("mnist", "fashion-mnist")  # 28 x 28 images: the CNN's input


def parse_trial(raw: dict, kind: str, bad) -> str:
    """The spec's ``trial`` (default "latent"): a classifier sweep is a grid, and only it has a [classifier] table."""
    trial = raw.get("trial", "latent")
    if trial not in TRIALS:
        raise bad("trial", f"must be one of {', '.join(TRIALS)}, got {trial!r}")
    if trial == "classifier" and kind != "grid":
        raise bad("kind", f'a classifier sweep is a grid over {AXIS}; got kind = "{kind}"')
    if trial != "classifier" and "classifier" in raw:
        raise bad("classifier", 'only a sweep with trial = "classifier" has a [classifier] table')
    if trial == "classifier" and raw.get("axis") != AXIS:
        raise bad("axis", f'a classifier sweep varies {AXIS}: axis = "{AXIS}"; got {raw.get("axis")!r}')
    return trial


def axes(trial: str) -> set[str]:
    """What a grid spec's ``axis`` may name: a RunConfig field, or for a classifier sweep n_augment alone."""
    return {AXIS} if trial == "classifier" else {f.name for f in dataclasses.fields(RunConfig)}


def parse_settings(value, key: str, bad, where: str = "") -> dict:
    """A ``[classifier]`` table (or a budget's ``classifier``): known keys, each value of its type and range."""
    table = checks.table(value, key, bad, where)
    for name in table:
        if name not in SETTINGS:
            raise bad(f"{key}.{name}", f"unknown setting; expected one of {', '.join(SETTINGS)}", where)
    try:
        ClassifierConfig(**table).validate()
    except ClassifierError as exc:
        raise bad(f"{key}.{str(exc).split()[0]}", str(exc), where) from None
    return dict(table)


def points(models: tuple[dict, ...], values: tuple) -> list[tuple]:
    """(label, variant, model, overrides, N) of every point: N = 0 once (variant "none"), then each DLVM entry at
    each N > 0."""
    out = []
    if 0 in values:
        first = models[0]
        out.append((f"{NONE} {AXIS}=0", NONE, first["model"], dict(first.get("set", {})), 0))
    for entry in models:
        label, overrides = entry["label"], dict(entry.get("set", {}))
        out += [(f"{label} {AXIS}={v:g}", label, entry["model"], overrides, v) for v in values if v != 0]
    return out


def classifier_config(spec, budget, n_augment: int, seed: int) -> ClassifierConfig:
    """The CNN's config of one trial: [classifier] < the budget's ``classifier`` < N and the seed."""
    return ClassifierConfig(**{**spec.classifier, **budget.classifier}, n_augment=int(n_augment), seed=seed)


def validate(spec, bad) -> None:
    """A classifier spec's own checks (spec: a bench.sweep.spec.Spec): 28 x 28 data, DLVM entries without an axis,
    N non-negative integers, attack radii among bench.registry.CLF_EPS, and each LAE DLVM trained at the CNN's batch
    size (ALD's step size is tied to the batch it samples). ``bad(key, why, table)``: the one-line error."""
    if spec.trial != "classifier":
        return
    if spec.dataset not in DATASETS:
        raise bad("dataset", f"the CNN takes 28 x 28 images ({', '.join(DATASETS)}); got {spec.dataset!r}")
    for i, entry in enumerate(spec.models):
        if entry.get("axis") is not None:
            raise bad(f"models[{i}].axis", f"a classifier sweep's DLVMs follow {AXIS} without an axis of their own")
    for budget in spec.budgets.values():
        table = f"budget.{budget.name}"
        own = budget.values is not None  # the budget's grid replaces the spec's
        values, key, where = (budget.values, f"{table}.values", table) if own else (spec.values, "values", "")
        if not all(checks.is_count(v, 0) for v in values):
            raise bad(key, f"{AXIS} values must be non-negative integers, got {list(values)!r}", where)
        eps = MetricSettings.preset(budget.metrics).replace(**budget.metric_settings).adv_eps
        if not set(eps) <= set(CLF_EPS):
            why = f"the classifier's radii are among {list(CLF_EPS)} (bench.registry.CLF_EPS), got {list(eps)}"
            raise bad(f"{table}.metric_settings.adv_eps", why, table)
        batch = classifier_config(spec, budget, 0, 0).batch_size
        for point in spec.points(budget):
            dlvm = spec.config(point, budget, 0).batch_size
            if point.model == "lae" and point.variant != NONE and dlvm != batch:
                why = (
                    f"the LAE DLVM ({point.label}) trains at batch_size {dlvm} but samples the CNN's batches of "
                    f"{batch}: ALD's step size is tied to its batch size, so set both to the same"
                )
                raise bad("classifier.batch_size", why, "classifier")
