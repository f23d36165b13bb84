"""Files: the one atomic write and the one YAML reader every module uses."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import yaml


def atomic_write(path: Path, data: bytes | Callable[[IO[bytes]], None]) -> None:
    """Write `data` (bytes, or a function that writes to an open binary file) through a temp file in the
    same folder and os.replace: readers never see half a file, and a crash leaves the old file or none.

    The file gets the mode any new file gets (0666 less the user's umask, so usually readable by others,
    as results on a shared server should be); tempfile.mkstemp would make it 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path)
    os.close(fd)  # reopened by name, so that the writer sees the temp file's path in `f.name`
    try:
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _create_temp(path: Path) -> tuple[int, Path]:
    """A new, exclusively created temp file next to `path` (mode 0666 & ~umask) and its open descriptor."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-3` as a number (YAML 1.1 wants `1.0e-3`; users do not)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """Parse YAML the way scenario files, profile files and `--set` values are parsed."""
    return yaml.load(text, Loader=_YamlLoader)  # safe: _YamlLoader is a SafeLoader
