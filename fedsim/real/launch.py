"""Starting the worker processes of a real run on this machine, and ending all of them if one fails.

Each rank is `python3 -m fedsim.real.worker` (or a calibration probe) in a session of its own, with its spec
on stdin and its output in a file. The launcher polls them: the first one to exit with an error, or the
deadline, ends the run: every remaining process group is killed (SIGKILL), none is left behind, and the
failure is one line naming the rank and its last error line.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fedsim.common.errors import UserError

_POLL_S = 0.02


def free_port() -> int:
    """A TCP port nothing listens on now (the rendezvous store of the run binds it next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(specs: list[dict[str, Any]], *, master_port: int, timeout_s: float, threads: int,
           master_addr: str = "127.0.0.1", module: str = "fedsim.real.worker") -> list[dict[str, Any]]:
    """Run one `module` process per spec (rank order) and return what rank 0 gathered (every rank's record, in
    rank order)."""
    with tempfile.TemporaryDirectory(prefix="fedsim-real-") as tmp:
        records_path = Path(tmp) / "records.json"
        env = {**os.environ, "MASTER_ADDR": master_addr, "MASTER_PORT": str(master_port),
               "GLOO_SOCKET_IFNAME": os.environ.get("GLOO_SOCKET_IFNAME", "lo"),
               "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
               "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        procs: list[subprocess.Popen] = []
        logs = []
        try:
            for spec in specs:
                log = Path(tmp) / f"rank{spec['rank']}.log"
                logs.append(log)
                with log.open("wb") as out:
                    proc = subprocess.Popen([sys.executable, "-m", module], stdin=subprocess.PIPE,
                                            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
                procs.append(proc)
                proc.stdin.write(json.dumps({**spec, "records_path": str(records_path)}).encode())
                proc.stdin.close()
            _wait(procs, logs, specs, timeout_s)
        finally:
            _kill(procs)
        return json.loads(records_path.read_text(encoding="utf-8"))


def _wait(procs: list[subprocess.Popen], logs: list[Path], specs: list[dict[str, Any]], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        codes = [p.poll() for p in procs]
        for spec, log, code in zip(specs, logs, codes, strict=True):
            if code not in (None, 0):
                raise UserError("real", f"{_who(spec)} failed: {_last_error(log, code)}", _fix(log))
        if all(code == 0 for code in codes):
            return
        if time.monotonic() > deadline:
            waiting = [_who(s) for s, c in zip(specs, codes, strict=True) if c is None]
            raise UserError("real", f"no result after {timeout_s:g} s ({', '.join(waiting)} still running)",
                            "raise --timeout, or check that every rank can reach MASTER_ADDR:MASTER_PORT")
        time.sleep(_POLL_S)


def _kill(procs: list[subprocess.Popen]) -> None:
    """SIGKILL every process group still alive and reap it: no worker outlives the launcher."""
    for proc in procs:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for proc in procs:
        proc.wait()


def _who(spec: dict[str, Any]) -> str:
    return "the relay" if spec["role"] == "relay" else f"participant {spec['rank']}"


def _last_error(log: Path, code: int) -> str:
    lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "error" in line]
    detail = (errors or lines or [""])[-1]
    how = f"exit status {code}" if code > 0 else f"killed by signal {-code}"
    return f"{how}: {detail}" if detail else how


def _fix(log: Path) -> str:
    text = log.read_text(encoding="utf-8", errors="replace")
    if "EADDRINUSE" in text or "address already in use" in text:
        return "the rendezvous port is taken: pick another --master-port, or leave it out to use a free one"
    return "see the line above; a crashed participant ends the whole run"
