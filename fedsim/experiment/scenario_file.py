"""Scenario files: UTF-8 YAML text -> a validated Scenario, every problem one line naming the file."""

from __future__ import annotations

from pathlib import Path

import yaml

from fedsim.common.errors import UserError
from fedsim.common.files import load_yaml
from fedsim.experiment.config import Scenario, validate_scenario


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML file; every problem is one UserError line."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError("", "no such file or directory", "give the path of a scenario .yaml file", source) from None
    except IsADirectoryError:
        raise UserError("", "is a directory", "give the path of a scenario .yaml file", source) from None
    except UnicodeDecodeError:
        raise UserError("", "is not UTF-8 text", "save the scenario as a UTF-8 YAML file", source) from None
    try:
        data = load_yaml(text)
    except yaml.YAMLError as err:
        raise _yaml_error(source, err) from None
    if data is None:
        raise UserError("", "the file is empty", "write a YAML mapping, e.g. `schedule: {H: 4}`, or `{}` for all "
                        "defaults", source)
    return validate_scenario(data, source=source)


def _yaml_error(source: str, err: yaml.YAMLError) -> UserError:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    if mark is None:
        return UserError("", f"invalid YAML: {problem}", "check the file's syntax", source)
    line = mark.line + 1
    return UserError(f"line {line}", f"invalid YAML: {problem} (column {mark.column + 1})",
                     f"check indentation, ':' after keys and quoting on or just before line {line}", source)
