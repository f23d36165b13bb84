"""A deterministic stand-in for the real run, shared by the sweep tests and the processes they start.

It logs every call to a file (one line per run, so calls from worker processes add up) and can sleep, fail on
its n-th call, or raise an interrupt, which lets tests count exactly which runs were computed and where.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fedsim.experiment.config import validate_scenario

REPO = Path(__file__).resolve().parents[1]
AXES = {"schedule.H": [1, 2], "participants.n": [2, 3]}


@dataclass
class Records:
    participants: pd.DataFrame
    summary: dict
    trace: dict | None = None


@dataclass
class FakeRun:
    log: Path
    fail_on_call: int | None = None
    error: type[BaseException] = RuntimeError
    sleep_s: float = 0.0

    def calls(self) -> list[str]:
        return self.log.read_text().split() if self.log.exists() else []

    def __call__(self, scenario, setup) -> Records:
        if len(self.calls()) + 1 == self.fail_on_call:
            raise self.error("boom")
        time.sleep(self.sleep_s)
        n, h = scenario.participants.n, scenario.schedule.H
        with self.log.open("a") as f:
            f.write(f"H={h},n={n},seed={scenario.seed},pid={os.getpid()}\n")
        participants = pd.DataFrame({
            "participant": range(n), "role": ["collaborator"] * (n - 1) + ["publisher"],
            "bytes_sent": [1e6 / h] * n, "task_correct": [1.0 / h] * n, "exposed_layers": [list(range(0, 8, h))] * n,
        })
        summary = {"task_correct_publisher": 1.0 / h, "task_correct_best_collaborator": 0.9 / h,
                   "task_correct_average": 0.8 / h, "bytes_sent_per_participant": 1e6 / h,
                   "ttft_s": 0.1 * n + 0.01 * h, "total_flops": 1e9 * n, "peak_mem_bytes": 1e8,
                   "kl_mean_publisher": math.nan}  # not measured: NaN, stored as null
        return Records(participants, summary, {"events": [[0.0, "start"]]} if scenario.engine.trace else None)


def calls_without_pid(fake: FakeRun) -> list[str]:
    return [line.rsplit(",pid=", 1)[0] for line in fake.calls()]


def scenario(**extra):
    return validate_scenario({"name": "demo", "model": {"name": "tiny-random"}, **extra}, source="demo.yaml")


def table_bytes(root: Path) -> dict[str, bytes]:
    """Every table file of a results folder, by its path inside the folder."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob("*.parquet/*.parquet"))}


def subprocess_env() -> dict[str, str]:
    """Processes started by tests import this checkout's fedsim and these fakes."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}


def main(argv: list[str]) -> None:
    """OUT LOG SLEEP_S SEEDS BACKEND WORKERS [GO]: one sweep over seeds 0..SEEDS-1 with the fake run; prints
    its row count, runs computed and runs skipped. With GO, it first writes GO.<pid>.ready and waits for GO,
    so that tests can start two sweeps at the same moment."""
    from fedsim.experiment.sweep import run_sweep

    out, log, sleep_s, seeds, backend, workers, *go = argv
    if go:
        Path(f"{go[0]}.{os.getpid()}.ready").touch()
        while not Path(go[0]).exists():
            time.sleep(0.01)
    runs = run_sweep(scenario(), {"seed": list(range(int(seeds)))}, out, workers=int(workers), backend=backend,
                     run_fn=FakeRun(Path(log), sleep_s=float(sleep_s)), progress=False)
    print(len(runs), runs.attrs["ran"], runs.attrs["skipped"])


if __name__ == "__main__":
    main(sys.argv[1:])
