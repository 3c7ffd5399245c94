"""One trial of an augmented-classifier sweep (``trial = "classifier"``, bench.sweep.classifier_spec): the frozen DLVM
(trained once per configuration, cached), the course project's CNN trained on batches augmented with N decoded
posterior images per image (lae.classifier), its accuracy and robustness (bench.metrics.robustness), as an
Outcome for the row (bench.sweep.rows).

The DLVM cache: ``<results>/dlvm/<model>-<hash>.pt`` (a lae checkpoint, written atomically by
lae.train.save_checkpoint) beside ``<model>-<hash>.json`` (its training summary and warnings), ``hash`` the first
16 hex digits of the SHA-256 of its RunConfig (data_dir and device left out: where the data lie and what runs it do
not change the model) and CACHE_FORMAT. Under an flock on ``<model>-<hash>.pt.flock`` (bench.sweep.durability.FileLock,
released by the kernel if its holder dies) the first trial that needs it trains and saves it, and every other trial
(any worker on this machine, any later run) waits and loads it: one DLVM per family and seed, trained once. Every
trial, the one that trained it included, uses the model loaded back from the file, so the rows do not depend on
which trial trained it. ``*.pt`` files are never committed (.gitignore).

Data: the CNN trains and is tested on grayscale images (the dataset's ``8bit`` preprocessing, k / 255: the course
project's ToTensor images), the same first ``train_size`` training images as the DLVM; a DLVM trained on binarized
images (Bernoulli likelihood) takes its posterior at a Bernoulli draw of each batch (lae.classifier)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from pathlib import Path

from bench.metrics.robustness import classifier_metrics
from bench.registry import METRICS
from bench.sweep.classifier_spec import NONE, classifier_config
from bench.sweep.durability import FileLock
from bench.sweep.rows import Outcome, reason, warning_lines
from lae import data as data_lib
from lae.classifier import IMAGE_SIDE, ClassifierError, dlvm_sampler, train_classifier
from lae.config import RunConfig
from lae.train import DivergenceError, chain_columns, fit, load_checkpoint, resolve_device, save_checkpoint
from lae.utils import atomic_write_text

CACHE_FORMAT = 1
SAMPLER_SEED_OFFSET = 2_000_003  # the DLVM sampler's generator: the trial's seed + this
CLF_METRICS = tuple(m.name for m in METRICS.values() if m.group == "classifier")
_IMAGES: dict = {}  # (dataset, data_dir, train_size, val_size) -> the 8bit Dataset, loaded once per process


def dlvm_hash(config: RunConfig) -> str:
    """16 hex digits identifying a DLVM: its RunConfig without data_dir and device, and CACHE_FORMAT."""
    fields = {k: v for k, v in config.to_dict().items() if k not in ("data_dir", "device")}
    text = json.dumps({"cache_format": CACHE_FORMAT, **fields}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def dlvm_path(results: str | os.PathLike, config: RunConfig) -> Path:
    return Path(results) / "dlvm" / f"{config.model}-{dlvm_hash(config)}.pt"


def cached_dlvm(config: RunConfig, dataset: data_lib.Dataset, results: str | os.PathLike):
    """The DLVM of `config` from the cache, trained and saved first if absent (under its lock). -> (model in eval
    mode with frozen parameters, its summary: val_loss, accept, seconds, warnings; "trained" or "cache")."""
    path = dlvm_path(results, config)
    summary = path.with_suffix(".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path)
    lock.acquire()
    try:
        source = "cache"
        if not (path.is_file() and summary.is_file()):
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                result = fit(config, dataset)
            save_checkpoint(result, path)
            info = {**result.summary(), "warnings": warning_lines(seen)}
            atomic_write_text(summary, json.dumps(info, indent=1) + "\n")  # after the checkpoint: both or retrain
            source = "trained"
        model, _ = load_checkpoint(path, config.device)
        info = json.loads(summary.read_text())
    finally:
        lock.release()
    return model.requires_grad_(False), info, source


def classifier_images(config: RunConfig) -> data_lib.Dataset:
    """The CNN's data: config's dataset and sizes as grayscale images (8bit), loaded once per process."""
    key = (config.dataset, config.data_dir, config.train_size, config.val_size)
    if key not in _IMAGES:
        _IMAGES[key] = data_lib.load(
            config.dataset, "8bit", config.data_dir, val_size=config.val_size, train_size=config.train_size
        )
    return _IMAGES[key]


def run_classifier_trial(plan, point, config: RunConfig, dataset, trial) -> Outcome:
    """Train (the DLVM if needed, then the CNN) and attack. The objective: the test error 1 - clf_test_acc.
    dataset: the DLVM's (config's) data."""
    n = int(point.axis_value)
    clf = classifier_config(plan.spec, plan.budget, n, config.seed)
    metrics = {name: math.nan for name in (*CLF_METRICS, "eval_seconds")}
    outcome = Outcome(config=_config_columns(config, n), metrics=metrics)
    info, source, trained = {}, None, None
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            images, device = classifier_images(config), resolve_device(config.device)
            if images.n_pixels != IMAGE_SIDE * IMAGE_SIDE:  # before a DLVM trains for nothing (--dataset digits)
                raise ClassifierError(
                    f"the CNN takes {IMAGE_SIDE}x{IMAGE_SIDE} images; {config.dataset} has {images.n_pixels} pixels"
                )
            sampler = None
            if n > 0:
                model, info, source = cached_dlvm(config, dataset, plan.results)
                sampler = dlvm_sampler(model, config.preprocessing != "8bit", config.seed + SAMPLER_SEED_OFFSET)
            trained = train_classifier(clf, images.train, sampler, device)
            t0 = time.perf_counter()
            metrics.update(classifier_metrics(trained.net, images.test, plan.settings, seed=config.seed))
            metrics["eval_seconds"] = time.perf_counter() - t0
            outcome.value = 1.0 - metrics["clf_test_acc"]
        except DivergenceError as exc:
            outcome.status, outcome.error = "fail", f"diverged: DLVM: {exc}"
        except Exception as exc:  # one failed trial must not stop the sweep
            outcome.status, outcome.error = "fail", reason(exc)
    outcome.warnings = list(dict.fromkeys([*info.get("warnings", []), *warning_lines(seen)]))
    outcome.columns = _training_columns(config, n, clf, (info, source), trained)
    return outcome


def _config_columns(config: RunConfig, n: int) -> dict:
    """The RunConfig columns; without a DLVM (N = 0) only the data's are kept, the others empty."""
    cfg = {k: v for k, v in config.to_dict().items() if k != "data_dir"}
    if n == 0:
        cfg = {k: (v if k in ("dataset", "seed", "train_size", "val_size", "device") else None) for k, v in cfg.items()}
    return cfg


def _training_columns(config: RunConfig, n: int, clf, dlvm: tuple, trained) -> dict:
    """The DLVM's and the CNN's training figures. dlvm: (the cached DLVM's summary, "trained" | "cache" | None)."""
    info, source = dlvm
    return dict(
        model=NONE if n == 0 else config.model,
        n_augment=n,
        likelihood=config.likelihood if n > 0 else None,
        val_loss=float(info["val_loss"][-1]) if info else math.nan,  # the DLVM's, nats per image
        mh_accept=float(info["accept"][-1]) if info and info["accept"][-1] is not None else math.nan,
        **chain_columns(info.get("step_size"), info.get("jump")),  # final_step_size, phi_msjd (LAE; else nan)
        dlvm_seconds=float(info["train_seconds"]) if info else math.nan,
        dlvm_hash=dlvm_hash(config) if n > 0 else None,
        dlvm_source=source,
        clf_lr=float(clf.lr),
        clf_batch_size=clf.batch_size,
        clf_epochs=clf.epochs,
        clf_images_seen=trained.images_seen if trained is not None else math.nan,
        clf_train_loss=trained.train_loss[-1] if trained is not None else math.nan,
        train_seconds=trained.seconds if trained is not None else math.nan,  # the CNN's, the sampler's included
        epochs_run=clf.epochs if trained is not None else 0,
        decoder_depth=config.dec_depth if n > 0 else None,
    )
