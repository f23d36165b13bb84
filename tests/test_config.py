"""Scenario config: defaults, stable hashes, dotted overrides, and one-line fixable errors."""

import pickle
from pathlib import Path

import pytest

from fedsim.common.errors import UserError
from fedsim.common.files import load_yaml
from fedsim.experiment.config import config_hash, validate_scenario, with_overrides
from fedsim.experiment.scenario_file import load_scenario
from fedsim.workloads.retrieval import RetrievalParams


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    return path


def test_defaults_resolve_to_plain_json_with_schema_defaults() -> None:
    resolved = validate_scenario({}).resolved()
    assert resolved["schedule"] == {"H": 4, "phase": "first", "placement": "uniform", "layers": None,
                                    "publisher_H": None, "r_comp": 1.0, "r_comm": 1.0, "r_comp_publisher": None,
                                    "r_comm_publisher": None, "publisher_dense": False}
    assert resolved["decoding"] == {"max_new_tokens": 32, "greedy": True, "temperature": 0.2, "top_k": 20,
                                    "top_p": 0.9, "sampler": "authors", "responder": "publisher"}
    assert resolved["partition"] == {"scheme": "contiguous", "tokenization": "whole_prompt"}
    assert resolved["task"] == {"kind": "gsm8k", "chat": False, "shots": 7, "question_index": 0}
    assert resolved["participants"] == {"n": 4, "device": "jetson-orin-nano", "overrides": {}}
    assert resolved["network"]["link"] == "wifi6" and resolved["output_dir"] == "results"


def test_yaml_file_loads_with_participant_and_link_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, """
name: pi-mix
participants: {n: 3, overrides: {0: {device: raspberry-pi-5}}}
network: {link: 5g, overrides: {2: {uplink_mbps: 20, latency_ms: 40}}}
schedule: {H: 2}
faults: {deadline_s: 1e-1}
""")
    s = load_scenario(path)
    assert s.participants.overrides[0].device == "raspberry-pi-5"
    assert s.network.overrides[2].uplink_mbps == 20 and s.schedule.H == 2
    assert s.faults.deadline_s == 0.1  # 1e-1 is a number, although YAML 1.1 would read a string
    assert s.source == str(path)


def test_config_hash_is_12_hex_stable_and_ignores_output_location_and_sweep() -> None:
    base = validate_scenario({"schedule": {"H": 2}})
    h = config_hash(base.resolved())
    assert len(h) == 12 and int(h, 16) >= 0
    assert h == config_hash(validate_scenario({"schedule": {"H": 2}}).resolved())
    assert h == config_hash(validate_scenario({"schedule": {"H": 2}, "output_dir": "elsewhere",
                                               "sweep": {"seed": [1, 2]}}).resolved())
    assert h != config_hash(validate_scenario({"schedule": {"H": 4}}).resolved())


def test_with_overrides_sets_dotted_keys_and_validates() -> None:
    s = validate_scenario({"participants": {"overrides": {0: {"device": "raspberry-pi-5"}}}})
    t = with_overrides(s, {"schedule.H": 8, "participants.overrides.1.device": "apple-m2",
                           "faults.dropout": {"probability": 0.2}})
    assert t.schedule.H == 8 and t.faults.dropout.probability == 0.2
    assert {i: o.device for i, o in t.participants.overrides.items()} == {0: "raspberry-pi-5", 1: "apple-m2"}
    assert s.schedule.H == 4  # the original is untouched


def test_switching_task_kind_does_not_carry_the_old_kinds_defaults() -> None:
    t = with_overrides(validate_scenario({}), {"task.kind": "retrieval", "task.n_facts": 3})
    assert isinstance(t.task, RetrievalParams) and t.task.n_facts == 3


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"schedul.H": 1}, "--set: schedul: unknown key 'schedul'; did you mean 'schedule'?"),
    ({"schedule.Hh": 1}, "--set: schedule.Hh: unknown key 'Hh'; did you mean 'H'?"),
    ({"schedule.H": 0}, "--set: schedule.H: must be >= 1 (got 0);"),
    ({"schedule.H.x": 1}, "--set: schedule.H.x: 'schedule.H' holds a single value"),
])
def test_with_overrides_errors_like_yaml(overrides: dict, expected: str) -> None:
    with pytest.raises(UserError) as err:
        with_overrides(validate_scenario({}), overrides, source="--set")
    assert str(err.value).startswith(expected)


@pytest.mark.parametrize(("text", "expected"), [
    ("schedule: {H: 0}\n",
     "scenario.yaml: schedule.H: must be >= 1 (got 0); schedule.H is the sync interval"),
    ("schedule: {H: four}\n", "scenario.yaml: schedule.H: must be an integer (got 'four')"),
    ("decoding: {greedy: maybe}\n", "scenario.yaml: decoding.greedy: must be true or false (got 'maybe')"),
    ("schedule: {Hh: 2}\n", "scenario.yaml: schedule.Hh: unknown key 'Hh'; did you mean 'H'?"),
    ("shedule: {H: 2}\n", "scenario.yaml: shedule: unknown key 'shedule'; did you mean 'schedule'?"),
    ("participants: {device: raspbery-pi-5}\n",
     "scenario.yaml: participants.device: unknown device profile 'raspbery-pi-5'; did you mean 'raspberry-pi-5'?"),
    ("network: {overrides: {0: {link: wifi7}}}\n",
     "scenario.yaml: network.overrides.0.link: unknown link profile 'wifi7'; did you mean 'wifi6'?"),
    ("network: {overrides: {1: {uplink_mbps: -5}}}\n",
     "scenario.yaml: network.overrides.1.uplink_mbps: must be > 0 (got -5)"),
    ("network: {topology: mash}\n", "scenario.yaml: network.topology: must be one of 'star', 'mesh' or 'ring' "
                                    "(got 'mash'); did you mean 'mesh'?"),
    ("schedule: {r_comp: 0}\n", "scenario.yaml: schedule.r_comp: must be > 0 (got 0)"),
    ("schedule: {r_comm: 1.5}\n", "scenario.yaml: schedule.r_comm: must be <= 1 (got 1.5)"),
    ("participants: {n: 2, overrides: {3: {device: apple-m2}}}\n",
     "scenario.yaml: participants.overrides.3: no such participant; participants are numbered 0..1"),
    ("task: {kind: retrieval, shots: 2}\n", "scenario.yaml: task.shots: unknown key 'shots'"),
    ("task: {kind: gsm9k}\n", "scenario.yaml: task.kind: unknown kind 'gsm9k'; did you mean 'gsm8k'?"),
    ("faults: {dropout: {participant: 1}}\n", "scenario.yaml: faults.dropout.at_s: missing"),
    ("sweep: {schedule.Hx: [1, 2]}\n", "scenario.yaml: sweep.schedule.Hx: unknown key 'Hx'; did you mean 'H'?"),
    ("sweep: {schedule.H: 4}\n", "scenario.yaml: sweep.schedule.H: must be a list"),
    ("schedule:\n  H: 2\n   r_comp: 1\n", "scenario.yaml: line 3: invalid YAML: mapping values are not allowed"),
    ("", "scenario.yaml: the file is empty"),
    ("- H: 2\n", "scenario.yaml: the top level must be a mapping of keys (got list)"),
])
def test_mistakes_become_one_line_naming_file_field_and_fix(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(UserError) as err:
        load_scenario(write(tmp_path, text))
    message = str(err.value)
    assert message.startswith(str(tmp_path / expected)), message
    assert "\n" not in message and ";" in message


def test_only_the_first_problem_is_spelled_out_the_rest_counted() -> None:
    with pytest.raises(UserError, match=r"schedule\.H: .*\(1 more problem after this one\)$"):
        validate_scenario({"schedule": {"H": 0, "r_comp": 3}})


def test_missing_file_is_one_line_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"nope.yaml: no such file or directory; give the path"):
        load_scenario(tmp_path / "nope.yaml")


def test_scenario_error_survives_pickling_from_worker_processes() -> None:
    err = pickle.loads(pickle.dumps(UserError("schedule.H", "must be >= 1 (got 0)", "fix it", source="f.yaml")))
    assert str(err) == "f.yaml: schedule.H: must be >= 1 (got 0); fix it"


def test_set_values_parse_as_yaml_with_plain_exponents() -> None:
    assert load_yaml("[1, 2.5, 1e-3, wifi6, null, {probability: 0.2}]") == [1, 2.5, 0.001, "wifi6", None,
                                                                           {"probability": 0.2}]
