"""Files: the one atomic write, and the one way to read a hand-written file and parse its YAML.

Input files may come from anyone, so reading them is bounded: a size cap checked before reading (a device
such as /dev/zero is refused, never read), and a YAML loader that refuses what would explode later (deep
nesting, alias bombs, huge integers) or silently lose data (duplicate keys). Each refusal is a YAML error
with a line number and a fix, which callers turn into one line.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import yaml

from fedsim.common.errors import UserError


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
MAX_FILE_BYTES = 16 << 20  # a scenario is a few kB; 16 MiB leaves room for a long `text:` prompt
MAX_DEPTH = 32  # nesting levels; a scenario uses 4
MAX_NODES = 100_000  # values after alias expansion; the largest shipped scenario has a few hundred
MAX_INT_DIGITS = 30  # every integer field fits in 20 digits (seeds < 2^63)


def read_text(path: str | Path, what: str = "file", max_bytes: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of a regular file of at most `max_bytes`; anything else is one UserError naming the path.

    Devices, pipes and sockets are refused from their type (opening a FIFO would block, /dev/zero never
    ends) and the size is checked before and while reading."""
    source, fix = str(path), f"give the path of a {what}"
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise UserError("", "is a directory", fix, source)
        if not stat.S_ISREG(info.st_mode):
            raise UserError("", "is not a regular file (a device, pipe or socket)", fix, source)
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as err:
        raise UserError("", (err.strerror or str(err)).lower(), fix, source) from None
    if len(data) > max_bytes:
        raise UserError("", f"is larger than the {max_bytes >> 20} MiB a {what} may have",
                        f"give a smaller {what}", source)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError("", "is not UTF-8 text", f"save the {what} as UTF-8 text", source) from None


class YamlRefused(yaml.MarkedYAMLError):
    """Valid YAML that fedsim refuses (too deep, too large, a duplicate key); `fix` says what to do."""

    def __init__(self, problem: str, mark: yaml.Mark | None, fix: str) -> None:
        super().__init__(None, None, problem, mark)
        self.fix = fix


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader with limits (nesting, size after aliases, integer digits), no duplicate keys, and `1e-3`
    read as a number (YAML 1.1 wants `1.0e-3`; users do not)."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise YamlRefused(f"nested more than {MAX_DEPTH} levels deep", self.peek_event().start_mark,
                                  "flatten the structure")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self) -> yaml.Node | None:
        node = super().get_single_node()
        if node is not None:
            _expanded_size(node, {}, set())
        return node

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:  # an unhashable key: SafeLoader reports it
                    continue
                if duplicate:
                    raise YamlRefused(f"duplicate key {key!r}", key_node.start_mark,
                                      f"give {key!r} once (YAML would silently keep only the last value)")
                seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: yaml.Node) -> int:
        digits = len(str(node.value).lstrip("+-").replace("_", ""))
        if digits > MAX_INT_DIGITS:
            raise YamlRefused(f"an integer with {digits} digits (at most {MAX_INT_DIGITS})", node.start_mark,
                              "use a smaller number; every integer setting has a much lower bound")
        return super().construct_yaml_int(node)


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """Values in `node` with every alias expanded (memoized per node; depth is already bounded)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise YamlRefused("an alias refers to a value that contains it", node.start_mark,
                          "remove the recursive alias")
    open_nodes.add(key)
    children: list[yaml.Node] = []
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    size = 1 + sum(_expanded_size(child, sizes, open_nodes) for child in children)
    open_nodes.discard(key)
    if size > MAX_NODES:
        raise YamlRefused(f"more than {MAX_NODES:,} values once aliases are expanded", node.start_mark,
                          "write fewer values or fewer alias references")
    sizes[key] = size
    return size


_YamlLoader.add_constructor("tag:yaml.org,2002:int", _YamlLoader.construct_yaml_int)
_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """Parse YAML the way scenario files, profile files and `--set` values are parsed; a refusal raises
    `YamlRefused` (a yaml.YAMLError with a mark and a fix)."""
    return yaml.load(text, Loader=_YamlLoader)  # safe: _YamlLoader is a SafeLoader
