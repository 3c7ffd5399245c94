"""One helper per chore, shared by the library and the harness: atomic file writes, progress bars, a
model's device. (`bench` imports these; `lae` never imports `bench`.)"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import torch


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = False) -> Iterator[Path]:
    """Yield a hidden temporary path beside `path`; when the block succeeds it replaces `path` in one
    `os.replace` (atomic on POSIX), otherwise it is removed. A reader sees the old file or the whole
    new one, never a part. fsync: force the bytes to disk before the rename (the results store).
    The temporary name ends in `.tmp`: writers that infer a format from the suffix must pass it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` atomically (see atomic_path); returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


class _NoBar:
    """The progress bar when progress is off: every call does nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, desc: str, enabled: bool):
    """A tqdm bar (transient, fits the terminal) when `enabled`, else an object whose update,
    set_postfix and close do nothing, so callers never test for None."""
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's parameters."""
    return next(model.parameters()).device
