"""Scenario files: UTF-8 YAML text -> a validated Scenario, every problem one line naming the file."""

from __future__ import annotations

from pathlib import Path

import yaml

from fedsim.common.errors import UserError
from fedsim.common.files import load_yaml, read_text
from fedsim.experiment.config import Scenario, validate_scenario


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML file; every problem is one UserError line."""
    source = str(path)
    text = read_text(path, "scenario .yaml file")
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
    fix = getattr(err, "fix", None)  # fedsim.common.files.YamlRefused: valid YAML that fedsim refuses
    if isinstance(err, yaml.constructor.ConstructorError) and "tag" in str(problem):
        fix = "remove the '!' tag: a scenario holds plain values"
    if mark is None:
        return UserError("", f"invalid YAML: {problem}", fix or "check the file's syntax", source)
    line = mark.line + 1
    if fix:
        return UserError(f"line {line}", f"{problem} (column {mark.column + 1})", fix, source)
    return UserError(f"line {line}", f"invalid YAML: {problem} (column {mark.column + 1})",
                     f"check indentation, ':' after keys and quoting on or just before line {line}", source)
