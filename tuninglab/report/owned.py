"""Write into a folder the user names, replacing only what the lab wrote there.

`owned_dir` builds the new content in a temporary folder and swaps it in. The
folder's `manifest.json` lists every file the lab wrote (and what from); the
old folder loses only those files, and a folder holding anything else is
refused. The report's `--out` goes through here, never through
`files.atomic_dir`, which replaces a whole DVC output folder.

`replacing` is the guard that both the report's folder and `study collect`'s
results file pass before they are written again: nothing that an earlier one
holds (its baseline commit and experiments: `Holding`) is lost unless forced.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import pandas as pd

from tuninglab.lab.files import read_json, write_json

MANIFEST = "manifest.json"  # what `owned_dir` wrote in a folder, and what from
SHOWN_NAMES = 5  # experiments named in a message before "and N more"


class ForeignEntriesError(ValueError):
    """A folder the lab would replace holds entries that its manifest does not list."""


class NotWritableError(ValueError):
    """A folder the lab would write cannot be made or changed: a file is in the way, or permission lacks."""


def _listed(manifest: Any) -> set[str]:
    """The relative paths a manifest lists; paths that could leave the folder are ignored."""
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, list):
        return set()
    paths = {PurePosixPath(f) for f in files if isinstance(f, str)}
    return {p.as_posix() for p in paths if p.parts and not p.is_absolute() and ".." not in p.parts}


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a folder written by `owned_dir`; empty when there is none or it cannot be read."""
    try:
        manifest = read_json(folder / MANIFEST)
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def foreign_entries(folder: Path) -> list[str]:
    """The entries of `folder` that its manifest does not list, relative and sorted; [] when no folder.

    An unlisted folder is one entry (not searched); a listed folder is searched.
    Without a readable manifest every entry is foreign, the manifest included.
    """
    if not folder.is_dir():
        return []
    manifest = read_manifest(folder)
    owned = _listed(manifest) | ({MANIFEST} if manifest else set())
    folders = {parent.as_posix() for name in owned for parent in PurePosixPath(name).parents}
    foreign = []
    pending = [folder]
    while pending:
        for entry in sorted(pending.pop().iterdir()):
            name = entry.relative_to(folder).as_posix()
            if name in folders and entry.is_dir() and not entry.is_symlink():
                pending.append(entry)
            elif name not in owned or not entry.is_file() or entry.is_symlink():
                foreign.append(name + ("/" if entry.is_dir() else ""))
    return sorted(foreign)


def check_owned(folder: Path) -> None:
    """Raise `ForeignEntriesError` when `folder` is a file or holds entries its manifest does not list."""
    if folder.exists() and not folder.is_dir():
        raise ForeignEntriesError(f"{folder} is a file, not a folder; name a new or empty folder")
    foreign = foreign_entries(folder)
    if not foreign:
        return
    shown = ", ".join(foreign[:8]) + (f" and {len(foreign) - 8} more" if len(foreign) > 8 else "")
    if read_manifest(folder):
        raise ForeignEntriesError(
            f"{folder} holds what the lab did not write there ({shown}); "
            "move it away, or name a new or empty folder"
        )
    raise ForeignEntriesError(
        f"{folder} holds {shown} and no {MANIFEST} of what the lab wrote there; name a new or empty "
        "folder (a report of an older version has no manifest: delete it yourself to write one there)"
    )


def _usable(folder: Path) -> bool:
    """Whether files can be listed, made and deleted in `folder`: `os.access`, then a real attempt.

    The attempt catches what `os.access` may not, such as a read-only file system.
    """
    if not os.access(folder, os.R_OK | os.W_OK | os.X_OK):
        return False
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".tuninglab-check-"):
            return True
    except OSError:
        return False


def check_writable(folder: Path) -> None:
    """Raise `NotWritableError` unless `owned_dir` can write `folder`; nothing is left behind.

    `owned_dir` makes the new folder beside `folder` (making the folders above
    it that are missing) and deletes the old folder's files: the nearest
    existing folder above `folder` must be writable, and so must an existing
    `folder` and the folders in it that its manifest lists. A `folder` that is
    itself a file is `check_owned`'s to refuse.
    """
    full = folder.resolve()
    existing = next(path for path in (full, *full.parents) if path.exists())
    if existing == full:
        if not full.is_dir():
            return
        inside = {parent for name in _listed(read_manifest(full)) for parent in PurePosixPath(name).parents}
        places = [full.parent, *(full / name for name in sorted(inside | {PurePosixPath(".")}))]
    elif existing.is_dir():
        places = [existing]
    else:
        raise NotWritableError(
            f"{folder} cannot be made: {existing} is a file, not a folder; name a new or empty folder"
        )
    denied = [path for path in places if path.is_dir() and not _usable(path)]
    if denied:
        raise NotWritableError(
            f"{folder} cannot be written: permission denied on {', '.join(map(str, denied))} (the lab must "
            "list, make and delete files there); make it writable, or name another folder"
        )


def _remove_owned(folder: Path) -> None:
    """Delete the files `folder`'s manifest lists, the manifest, then the folders they leave empty."""
    owned = sorted(_listed(read_manifest(folder)) | {MANIFEST}, key=lambda name: -name.count("/"))
    for name in owned:
        (folder / name).unlink(missing_ok=True)
    folders = {parent.as_posix() for name in owned for parent in PurePosixPath(name).parents}
    for name in sorted(folders, key=len, reverse=True):
        with suppress(OSError):  # not empty: something appeared there that the lab did not write
            (folder / name).rmdir()


@contextmanager
def owned_dir(folder: Path, record: dict[str, Any]) -> Iterator[Path]:
    """Yield an empty temporary folder that becomes `folder` only if the block succeeds.

    `folder` may be absent, empty, or hold only what its manifest
    (`folder/manifest.json`, written here) lists. The new manifest lists every
    file the block wrote, with `record` (what they were made from). The old
    folder's listed files are deleted, nothing else: a folder left non-empty
    stays, renamed `.<name>-old-*` beside it.

    Raises:
        ForeignEntriesError: `folder` holds anything its manifest does not list
            (checked before the block, and again before replacing); nothing
            is changed then.
        NotWritableError: `folder` cannot be made or changed (`check_writable`,
            before the block); nothing is changed then.
    """
    folder = folder.resolve()
    check_writable(folder)
    check_owned(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-new-", dir=folder.parent))
    try:
        yield tmp
        written = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        write_json(tmp / MANIFEST, {"written_by": "tuninglab", "files": written, **record})
        tmp.chmod(0o755)
        check_owned(folder)
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}-old-", dir=folder.parent))
            try:
                os.replace(folder, old)
            except OSError:
                old.rmdir()
                raise
            try:
                os.replace(tmp, folder)
            except OSError:
                os.replace(old, folder)
                raise
            _remove_owned(old)
        else:
            os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class OverwriteError(ValueError):
    """Writing would drop experiments that an earlier results file or report holds; `--force` allows it."""


class Holding(NamedTuple):
    """What a results file or a report was written from: the baseline commit and its experiments."""

    commit: str
    experiments: frozenset[str]


def holding(frame: pd.DataFrame) -> Holding:
    """The baseline commit and the experiment names (the baseline left out) of a results table."""
    names = frozenset(str(name) for name in frame["experiment"] if name != "baseline")
    return Holding(str(frame["baseline_commit"].iloc[0]), names)


def _names(names: set[str] | frozenset[str]) -> str:
    shown = sorted(names)[:SHOWN_NAMES]
    more = len(names) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")


def replacing(target: Path, old: Holding | None, new: Holding, force: bool) -> str:
    """Check that writing `new` over `target`, written from `old`, loses no experiment; say what it replaces.

    Experiments of another baseline commit count as lost: they are other runs
    even where the names match. Returns "" when there was nothing to replace,
    else one sentence with the old and new experiment counts.

    Raises:
        OverwriteError: experiments of `old` are missing from `new` and not `force`.
    """
    if old is None:
        return ""
    same_commit = old.commit == new.commit
    lost = old.experiments - new.experiments if same_commit else old.experiments
    commits = "" if same_commit else f" of commit {old.commit[:7]}"
    if lost and not force:
        new_commit = "" if same_commit else f" of commit {new.commit[:7]}"
        raise OverwriteError(
            f"{target} was written from {len(old.experiments)} experiments{commits}; the new one has "
            f"{len(new.experiments)}{new_commit} and would lose {len(lost)}: {_names(lost)}; "
            "pass --force to replace it"
        )
    return (
        f"{target}: replaced {len(old.experiments)} experiments{commits} with {len(new.experiments)}"
        + (f" of commit {new.commit[:7]}" if not same_commit else "")
        + (f" ({len(lost)} dropped: {_names(lost)})" if lost and same_commit else "")
    )
