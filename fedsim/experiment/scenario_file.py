"""Scenario files and `--set` values: UTF-8 YAML text -> a validated Scenario, each problem one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from fedsim.common.errors import UserError
from fedsim.common.files import load_yaml, read_text
from fedsim.experiment.config import Scenario, check_dotted_key, validate_scenario


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


def parse_set(arg: str) -> tuple[str, list[Any]]:
    """'schedule.H=1,2,4' -> ('schedule.H', [1, 2, 4]); values are YAML, so null, 1e-3, {p: 0.2} work."""
    key, sep, text = arg.partition("=")
    key = key.strip()
    if not sep or not key or not text.strip():
        raise UserError(arg, "expected KEY=VALUE[,VALUE...]", "e.g. --set schedule.H=1,2,4,8", "--set")
    check_dotted_key(key, "--set")
    try:
        values = load_yaml(f"[{text}]")
    except Exception:  # any YAML error: the message below says what was expected
        raise UserError(key, f"cannot parse the values {text!r}",
                        "separate YAML values with commas, e.g. 1,2,4 or null,{probability: 0.2}", "--set") from None
    return key, values
