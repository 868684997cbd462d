"""The after-search steps' Ray tasks (audit, confirmation, refit), gathered as they finish.

A task that raises ends in one line and an error file (`errors/<step>-<key>-<attempt>.txt` in the
results folder, the whole traceback), never in a traceback that ends the driver: the other tasks
go on and their rows are kept. A failed task writes no part, so `--resume` runs it again; after
ATTEMPTS failures it is not retried, and each resume says which one failed and why.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable

from gzsl.results import ResultStore

ATTEMPTS = 2  # a failed task is run once more by --resume, then left alone


def one_line(exc: BaseException) -> str:
    """A task's exception as one line: the error raised inside the task, not Ray's wrapper."""
    cause = getattr(exc, "cause", None) or exc
    text = str(cause).strip()
    return f"{type(cause).__name__}: {text.splitlines()[0]}" if text else type(cause).__name__


def _errors(store: ResultStore) -> str:
    return f"{store.root.rstrip('/')}/errors"


def failures(store: ResultStore, step: str, key: str) -> list[str]:
    """The error files of a task's failed attempts, oldest first."""
    import pyarrow.fs as pafs

    folder = _errors(store)
    if store.fs.get_file_info(folder).type != pafs.FileType.Directory:
        return []
    infos = store.fs.get_file_info(pafs.FileSelector(folder))
    mine = [i.path for i in infos if i.base_name.startswith(f"{step}-{key}-") and i.base_name.endswith(".txt")]
    return sorted(mine, key=lambda p: int(p.rsplit("-", 1)[1].removesuffix(".txt")))


def record_failure(store: ResultStore, step: str, key: str, exc: BaseException) -> str:
    """Write the failure's whole text to its error file; returns the file."""
    store.fs.create_dir(_errors(store), recursive=True)
    path = f"{_errors(store)}/{step}-{key}-{len(failures(store, step, key)) + 1}.txt"
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # Ray colours its task tracebacks
    with store.fs.open_output_stream(path) as f:
        f.write(f"{one_line(exc)}\n\n{text}\n".encode())
    return path


def given_up(store: ResultStore, step: str, key: str) -> str | None:
    """The last failure of a task that failed ATTEMPTS times (its first line and file), else None."""
    files = failures(store, step, key)
    if len(files) < ATTEMPTS:
        return None
    with store.fs.open_input_stream(files[-1]) as f:
        first = f.read().decode(errors="replace").splitlines()[0]
    return f"{first} (error file {files[-1]})"


def gather(store: ResultStore, step: str, jobs: Iterable[tuple[str, Callable]], on_row: Callable[[dict], None],
           log: Callable[[str], None], what: str) -> list[str]:
    """Start each job (key, start: a function that submits its task and returns the ObjectRef)
    that has not failed ATTEMPTS times, call on_row with each result as it comes, and record each
    failure. Returns the keys that failed (now or for good). `what`: a job's label in the lines."""
    import ray

    failed, pending = [], {}
    for key, start in jobs:
        why = given_up(store, step, key)
        if why:
            log(f"{what} {key}: failed {ATTEMPTS} times, not retried: {why}")
            failed.append(key)
        else:
            pending[start()] = key
    while pending:
        done, _ = ray.wait(list(pending))
        key = pending.pop(done[0])
        try:
            row = ray.get(done[0])
        except Exception as exc:  # the task raised, or its worker died
            path = record_failure(store, step, key, exc)
            again = "--resume runs it once more" if len(failures(store, step, key)) < ATTEMPTS else "not retried"
            log(f"{what} {key} failed: {one_line(exc)} (error file {path}; {again})")
            failed.append(key)
            continue
        on_row(row)
    return failed
