"""The real runtime (one OS process per participant, K/V over torch.distributed gloo on loopback) agrees with
the simulator: last logits within 1e-4, identical greedy tokens, identical bytes sent per participant. It
keeps every participant's prompt to itself, and a crash or a taken port ends the whole run in one line."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fedsim.common.errors import UserError
from fedsim.experiment.config import validate_scenario
from fedsim.experiment.real_run import RealOptions, run_real
from fedsim.experiment.run import run_scenario
from fedsim.experiment.setup import prepare
from fedsim.fedattn.decode import generate
from fedsim.fedattn.prefill import FedAttnPrefill
from fedsim.models.loading import load_model

OPTIONS = RealOptions(timeout_s=180)


def scenario(n: int, topology: str, **schedule) -> object:
    return validate_scenario({
        "name": "real", "model": {"name": "tiny-random", "kv_bytes_per_element": 4},
        "task": {"kind": "retrieval", "n_context_pieces": n}, "participants": {"n": n},
        "network": {"topology": topology}, "schedule": schedule or {"H": 2}, "decoding": {"max_new_tokens": 6},
    })


def workers_alive() -> list[str]:
    """Command lines of any fedsim worker process still running (none may outlive a run)."""
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "fedsim.real.worker" in line and "ps -eo" not in line]


@pytest.mark.parametrize(("n", "topology", "schedule"), [
    (2, "star", {"H": 2}),
    (3, "mesh", {"H": 4, "placement": "deep_half"}),
    (3, "ring", {"H": 4, "publisher_H": 2}),
    (3, "star", {"H": 3, "phase": "last"}),
])
def test_real_run_equals_the_simulator(n, topology, schedule):
    sc = scenario(n, topology, **schedule)
    real = run_real(sc, OPTIONS, keep_logits=True)
    sim = run_scenario(sc)
    setup, lm = prepare(sc), load_model("tiny-random")
    batched = FedAttnPrefill(lm.model, setup.tokens, setup.prompt.partition, setup.schedule).run()
    publisher = next(r for r in real.records if r["rank"] == setup.prompt.partition.publisher)
    assert (torch.tensor(publisher["last_logits"]) - batched.last_logits()).abs().max() < 1e-4
    responder = next(r for r in real.records if r["rank"] == setup.responder)
    assert responder["generated"] == generate(batched, [setup.responder], 6, lm.tokenizer.eos_ids)[0]
    assert real.participants.bytes_sent.tolist() == sim.participants.bytes_sent.tolist()
    assert real.participants.exposed_layers.tolist() == sim.participants.exposed_layers.tolist()
    assert real.participants.flops_prefill.tolist() == pytest.approx(sim.participants.flops_prefill.tolist())
    assert real.participants.flops_decode.tolist() == pytest.approx(sim.participants.flops_decode.tolist())
    assert (real.participants.prefill_s > 0).all() and real.summary["ttft_s"] > real.summary["prefill_s"]


def int_lists(node) -> list[list[int]]:
    """Every list of integers anywhere in a JSON document."""
    if isinstance(node, dict):
        return [found for value in node.values() for found in int_lists(value)]
    if isinstance(node, list):
        if node and all(isinstance(v, int) for v in node):
            return [node]
        return [found for value in node for found in int_lists(value)]
    return []


def contains(haystack: list[int], needle: list[int]) -> bool:
    return any(haystack[i:i + len(needle)] == needle for i in range(len(haystack) - len(needle) + 1))


def test_no_participant_receives_another_participants_tokens(tmp_path, monkeypatch):
    sc = scenario(3, "star")
    setup = prepare(sc)
    sizes, tokens = setup.prompt.partition.sizes(), list(setup.tokens)
    slices = [tokens[sum(sizes[:p]):sum(sizes[:p + 1])] for p in range(3)]
    monkeypatch.setenv("FEDSIM_REAL_AUDIT", str(tmp_path))
    run_real(sc, OPTIONS)
    texts = [piece.text.strip() for piece in setup.prompt.task.pieces if piece.text.strip()]
    for rank in range(4):  # three participants and the star's relay
        received = (tmp_path / f"rank{rank}.json").read_text()  # everything this process was given
        given = json.loads(received)
        assert given["rank"] == rank
        if rank < 3:
            assert given["tokens"] == slices[rank] and given["offset"] == sum(sizes[:rank])
        else:
            assert given["role"] == "relay" and "tokens" not in given and "offset" not in given
        for other in range(3):
            if other != rank:
                assert not any(contains(ints, slices[other]) for ints in int_lists(given))
        assert not any(text in received for text in texts)  # no prompt text, not even its own


def test_a_crashed_worker_ends_the_run_in_one_line_and_leaves_no_process(monkeypatch):
    monkeypatch.setenv("FEDSIM_REAL_FAULT", "1:3")
    with pytest.raises(UserError) as err:
        run_real(scenario(3, "mesh"), OPTIONS)
    assert "participant 1 failed: exit status 3" in str(err.value) and "\n" not in str(err.value)
    assert workers_alive() == []


def test_a_taken_port_ends_the_run_in_one_line_and_leaves_no_process():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserError) as err:
            run_real(scenario(2, "mesh"), RealOptions(timeout_s=120, master_port=port))
    message = str(err.value)
    assert "participant 0 failed" in message and "--master-port" in message and "\n" not in message
    assert workers_alive() == []


def test_unsupported_settings_are_refused_before_any_process_starts():
    sparse = validate_scenario({"model": {"name": "tiny-random", "kv_bytes_per_element": 4},
                                "schedule": {"r_comm": 0.5}})
    with pytest.raises(UserError, match="schedule.r_comm: not supported by the real runtime"):
        run_real(sparse, OPTIONS)
    with pytest.raises(UserError, match="model.kv_bytes_per_element"):
        run_real(validate_scenario({"model": {"name": "tiny-random"}}), OPTIONS)
    assert workers_alive() == []


def test_ranks_started_separately_rendezvous_like_across_machines(tmp_path):
    """Each rank started on its own with torch.distributed's environment, as on separate machines."""
    sc_path = tmp_path / "real.yaml"
    sc_path.write_text("name: real\nmodel: {name: tiny-random, kv_bytes_per_element: 4}\n"
                       "task: {kind: retrieval}\nparticipants: {n: 2}\nnetwork: {topology: star}\n"
                       "decoding: {max_new_tokens: 6}\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "GLOO_SOCKET_IFNAME": "lo",
           "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-m", "fedsim", "real", str(sc_path), "--out", str(tmp_path),
                               "--rank", str(r), "--world-size", "3", "--timeout", "120"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in range(3)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    import pandas as pd

    table = pd.read_parquet(Path(tmp_path) / "real" / "real" / "participants.parquet")
    sc = validate_scenario(json.loads(json.dumps({"name": "real", "model": {"name": "tiny-random",
                                                  "kv_bytes_per_element": 4}, "task": {"kind": "retrieval"},
                                                  "participants": {"n": 2}, "network": {"topology": "star"},
                                                  "decoding": {"max_new_tokens": 6}})))
    sim = run_scenario(sc)
    assert table.bytes_sent.tolist() == sim.participants.bytes_sent.tolist()
    assert table[table.responder].generated_text.tolist() == sim.participants[sim.participants.responder] \
        .generated_text.tolist()
