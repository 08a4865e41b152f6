"""Write a command's outputs so that no input is ever destroyed, and build shared files once.

Every file a drift-verl command writes goes to a temporary file beside it and is renamed into place only when
complete (a killed or failed command leaves the old file, or nothing), and an output that is one of the
command's own inputs is refused before anything is read or written.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


class OutputOverInput(ValueError):
    """An output path names one of the command's inputs."""


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (links and relative paths included); a missing path names no file."""
    a, b = Path(a), Path(b)
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def refuse_overwriting(output: str | Path, inputs: Iterable[str | Path], what: str = "output") -> None:
    """Raise :class:`OutputOverInput` when ``output`` (a file the command writes, or a folder whose files it
    replaces) is, or holds, one of ``inputs``."""
    output = Path(output)
    for source in map(Path, inputs):
        if same_file(output, source) or source.resolve().is_relative_to(output.resolve()):
            raise OutputOverInput(f"the {what} {output} would overwrite the input {source}; write to another path")


@contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """A temporary path beside ``final`` to write to; renamed onto ``final`` when the block succeeds, removed
    when it fails."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp{final.suffix}")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(final: str | Path, text: str) -> None:
    with atomic_path(final) as tmp:
        tmp.write_text(text)


def cache_dir() -> Path:
    """drift-verl's cache (built assets, content hashes): ``$DRIFT_VERL_CACHE``, default ``~/.cache/drift_verl``."""
    return Path(os.environ.get("DRIFT_VERL_CACHE", Path.home() / ".cache" / "drift_verl"))


@contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock named after ``path`` (``path.lock``): one process builds it while others wait."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
