"""Packaging conventions: `python -m fedsim --version`, LICENSE and CITATION.cff, the scenario JSON Schema,
results readable under the user's umask, `run --set`, and examples in `--help`."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

import fedsim
from fedsim.cli import main
from fedsim.common.files import atomic_write, load_yaml

ROOT = Path(__file__).resolve().parent.parent


def test_python_m_fedsim_version() -> None:
    out = subprocess.run([sys.executable, "-m", "fedsim", "--version"], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout
    assert out.strip() == f"fedsim {fedsim.__version__}"


def test_license_and_citation_agree_with_the_package() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'license = { text = "Apache-2.0" }' in pyproject and 'dynamic = ["version"]' in pyproject
    license_text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert "END OF TERMS AND CONDITIONS" in license_text
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["license"] == "Apache-2.0"
    assert citation["version"] == fedsim.__version__
    assert "arXiv:2511.02647" in json.dumps(citation["preferred-citation"])


def test_schema_command_prints_a_json_schema_the_shipped_scenarios_satisfy(
        capsys: pytest.CaptureFixture[str]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    scenarios = sorted((ROOT / "scenarios").rglob("*.yaml"))
    assert len(scenarios) >= 10
    for path in scenarios:
        data = load_yaml(path.read_text())
        assert not list(validator.iter_errors(data)), path.name
    assert list(validator.iter_errors({"schedule": {"Hh": 2}}))  # unknown keys are flagged, as by fedsim
    assert list(validator.iter_errors({"schedule": {"H": 0}}))


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_results_are_written_with_the_users_umask(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "out" / "table.parquet", b"data")
        atomic_write(tmp_path / "out" / "table.parquet", lambda f: f.write(b"again"))  # replacing keeps the rule
    finally:
        os.umask(old)
    path = tmp_path / "out" / "table.parquet"
    assert stat.S_IMODE(path.stat().st_mode) == mode and path.read_bytes() == b"again"
    assert [p.name for p in path.parent.iterdir()] == ["table.parquet"]  # no temp file left


def test_run_takes_set_like_sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Records:
        def __init__(self, h: int) -> None:
            self.summary, self.trace = {"ttft_s": 1.0 / h}, None
            self.participants = pd.DataFrame({"participant": [0]})

    monkeypatch.setattr("fedsim.experiment.worker._run_in_worker", lambda sc, setup: Records(sc.schedule.H))
    monkeypatch.setattr("fedsim.experiment.sweep.prepare_points", lambda points: [None] * len(points))
    (tmp_path / "s.yaml").write_text("name: s\nmodel: {name: tiny-random}\n")
    assert main(["run", str(tmp_path / "s.yaml"), "--set", "schedule.H=1,2,8", "--out", str(tmp_path),
                 "--backend", "serial", "--no-progress", "--no-plots", "--no-report"]) == 0
    assert sorted(pd.read_parquet(tmp_path / "s" / "runs.parquet")["schedule.H"]) == [1, 2, 8]


@pytest.mark.parametrize("command", [[], ["run"], ["sweep"], ["validate"], ["report"], ["schema"]])
def test_help_shows_examples(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out and "fedsim " in out.split("example", 1)[1]
