"""Where results may be written, checked before anything is: a bad folder is one line and leaves nothing.

A scenario's own `output_dir` stays inside the working directory (fedsim.experiment.config); only `--out` may
point elsewhere. The results folder must be (or become) a directory this process can write, and nothing
inside it may be a symbolic link: fedsim writes only into folders it made, never through a planted link.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from fedsim.common.errors import UserError

_FIX = "give a folder that can be created or written (it is created if missing)"


def check_destination(root: Path, field: str) -> None:
    """Raise a UserError naming `field` (`--out` or `output_dir`) if results cannot go to `root`; writes nothing."""
    existing = Path(".") if not root.is_absolute() else Path(root.anchor)
    for prefix in _prefixes(root):
        try:
            info = os.stat(prefix)
        except FileNotFoundError:
            if os.path.islink(prefix):
                raise _error(field, prefix, "is a symbolic link to nothing (dangling)", _FIX) from None
            break  # this and what follows will be created
        except OSError as err:
            raise _error(field, prefix, _what(err), _fix(err)) from None
        if not stat.S_ISDIR(info.st_mode):
            kind = "a file" if stat.S_ISREG(info.st_mode) else "a device, pipe or socket"
            raise _error(field, prefix, f"is {kind}, not a folder", _FIX)
        existing = prefix
    name_max = _limit(existing, "PC_NAME_MAX", 255)
    if any(len(os.fsencode(part)) > name_max for part in root.parts):
        raise _error(field, root, f"has a folder name longer than the {name_max} bytes the filesystem allows",
                     "use shorter folder names")
    if len(os.fsencode(os.path.abspath(root))) >= _limit(existing, "PC_PATH_MAX", 4096):
        raise _error(field, root, "is a longer path than the filesystem allows", "use a shorter path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise _error(field, existing, "is not writable (permission denied)", _FIX)
    if existing == root:
        _check_inside(root, field)


def make_destination(root: Path, field: str) -> None:
    """Check `root` (see check_destination), then create it; if that fails, remove what was created."""
    check_destination(root, field)
    created: list[Path] = []
    try:
        for prefix in _prefixes(root):
            try:
                os.mkdir(prefix)
                created.append(prefix)
            except FileExistsError:
                if not os.path.isdir(prefix):  # a folder made meanwhile (a concurrent sweep) is fine
                    raise
    except OSError as err:
        for folder in reversed(created):
            os.rmdir(folder)
        raise _error(field, Path(err.filename or root), _what(err), _fix(err)) from None


def _check_inside(root: Path, field: str) -> None:
    """No symbolic link anywhere below `root`, and every folder there writable."""
    try:
        walk = list(os.walk(root, onerror=_raise))
    except OSError as err:
        raise _error(field, Path(err.filename or root), _what(err), _fix(err)) from None
    for folder, dirs, files in walk:
        for name in dirs + files:
            path = Path(folder) / name
            if path.is_symlink():
                raise _error(field, path, "is a symbolic link inside the results folder",
                             "fedsim does not write through links: remove it, or choose another folder")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise _error(field, Path(folder), "is not writable (permission denied)", _FIX)


def _prefixes(root: Path) -> list[Path]:
    """root's ancestors from the top down (without '/' or '.'), then root itself."""
    return [*reversed(root.parents[:-1]), root]


def _limit(path: Path, name: str, default: int) -> int:
    try:
        return os.pathconf(path, name)
    except (OSError, ValueError):
        return default


def _raise(err: OSError) -> None:
    raise err


def _what(err: OSError) -> str:
    if err.errno == errno.ELOOP:
        return "is a symbolic link loop"
    return (err.strerror or str(err)).lower()


def _fix(err: OSError) -> str:
    return {errno.ENAMETOOLONG: "use shorter folder names", errno.ENOSPC: "free some disk space",
            errno.ELOOP: "fix or remove the symbolic link"}.get(err.errno or 0, _FIX)


def _error(field: str, path: Path, problem: str, fix: str) -> UserError:
    shown = str(path) if len(str(path)) <= 80 else f"{str(path)[:40]}...{str(path)[-30:]}"
    return UserError(field, f"{shown} {problem}", fix)
