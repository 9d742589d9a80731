"""Where a command may write: never over one of its inputs, never where it would replace a
contract table of an input directory, never somewhere it cannot write.

Every command that writes calls ``check_output_path`` for each path it writes *before it reads
anything*, so a refused command leaves every file as it was. The check is on resolved paths
(symlinks followed), so ``HIST/./orders.parquet`` or a link to it is the same file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from returnrisk.contract import TABLE_NAMES
from returnrisk.errors import ReturnriskError

# the file names a data directory's tables have (``_table_file`` reads these)
CONTRACT_FILES = frozenset(f"{t}{ext}" for t in TABLE_NAMES for ext in (".parquet", ".csv"))


class OutputPathError(ReturnriskError, ValueError):
    """An output path that would overwrite an input, or that cannot be written."""


def _resolve(path: str | Path) -> Path:
    return Path(path).expanduser().resolve(strict=False)


def check_output_path(
    out: str | Path,
    inputs: Iterable[str | Path] = (),
    *,
    option: str = "--out",
    directory: bool = False,
    label: str | None = None,
) -> Path:
    """Refuse (``OutputPathError``, one line naming the option and both paths) an output that

    - is one of ``inputs`` (a file or a directory);
    - lies inside an input directory under a contract table's file name (``orders.parquet``,
      ``skus.csv``, ...): writing it would replace, or shadow, that table;
    - for a ``directory`` output (one file per table): contains one of the inputs;
    - cannot be written: an existing file where a directory is wanted (or the reverse), a
      parent that is a file, a directory without write permission.

    ``label`` names the path in the message when it is derived from ``option`` (e.g. the
    refused-rows directory next to ``--out``). Returns ``out`` unchanged.
    """
    where = label or f"{option} {out}"
    target = _resolve(out)
    for given in inputs:
        source = _resolve(given)
        if target == source:
            raise OutputPathError(f"{where}: is the input {given}; writing it would overwrite it")
        if directory and target in source.parents:
            raise OutputPathError(
                f"{where}: contains the input {given}; writing there could overwrite it "
                "(choose a new directory)"
            )
        if not directory and source in target.parents and target.name.lower() in CONTRACT_FILES:
            table = target.name.rsplit(".", 1)[0]
            raise OutputPathError(
                f"{where}: inside the input directory {given} under the name of its table "
                f"{table!r}; writing it would replace that table (choose another file name)"
            )
        parts = next((p for p in target.parents if p.parent == source), None)
        if parts is not None and parts.name in TABLE_NAMES:
            raise OutputPathError(
                f"{where}: inside the directory of parts of the table {parts.name!r} of the "
                f"input {given}; it would be read as one of its parts (choose another place)"
            )
    _check_writable(target, where, directory=directory)
    return Path(out)


def _check_writable(target: Path, where: str, *, directory: bool) -> None:
    if target.exists():
        if directory and not target.is_dir():
            raise OutputPathError(f"{where}: exists and is not a directory")
        if not directory and target.is_dir():
            raise OutputPathError(f"{where}: is a directory, not a file")
        if not os.access(target, os.W_OK):
            raise OutputPathError(f"{where}: not writable (permission denied)")
        return
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputPathError(f"{where}: cannot be created, {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"{where}: cannot be created, {parent} is not writable")


def write_error(err: OSError, option: str = "--out") -> str:
    """One line for an ``OSError`` raised while writing an output (e.g. a full disk, or a
    read-only directory the permission check could not see)."""
    what = err.filename if err.filename is not None else "the output"
    return f"{option}: cannot write {what}: {err.strerror or err}"
