"""Emulated links on one machine: this process moves into a private network namespace of its own, whose
loopback is shaped by the kernel's token-bucket filter. Needs root.

    ip link set lo up; ip link set lo mtu 1500
    tc qdisc replace dev lo root tbf rate <R>mbit burst <B>kb limit 4mb

Loopback has one egress queue for every flow and both directions, so the shaped loopback is ONE shared
medium of rate R on which every transmission (a send to a peer, to the relay, or the relay's forward) is
charged once. The MTU is set to Ethernet's 1500 bytes: with lo's default 64 KiB MTU and a burst below it, tbf
drops packets and gloo hangs. A small burst (8 KB) keeps exchange times independent of how long the link sat
idle, and `limit 4mb` queues instead of dropping. No latency is added: `sch_netem` is not available on this
kernel, and any latency in a measurement is the transport's own. Traffic never leaves the namespace.
Measured behaviour and the reasons for these settings: the README, "Real runtime".
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess

from fedsim.common.errors import UserError

_CLONE_NEWNET = 0x40000000


def enter_private_network() -> None:
    """Move this process (and every process it starts afterwards) into a new, empty network namespace."""
    if os.geteuid() != 0:
        raise UserError("--rate-mbit", "shaping links needs root (a private network namespace and tc)",
                        "run as root, or leave --rate-mbit out for unshaped loopback")
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            raise UserError("--rate-mbit", f"`{tool}` is not installed", "install iproute2 (apt-get install iproute2)")
    unshare = getattr(os, "unshare", None)  # Python 3.12+
    if unshare is not None:
        unshare(_CLONE_NEWNET)
    else:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(_CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise UserError("--rate-mbit", f"cannot create a network namespace: {os.strerror(err)}",
                            "run as root on a kernel with network namespaces")
    _run("ip", "link", "set", "lo", "up")
    _run("ip", "link", "set", "lo", "mtu", "1500")


def shape_loopback(rate_mbit: float | None, burst_kb: float = 8.0) -> None:
    """Shape this namespace's loopback to `rate_mbit` (None: remove the shaping)."""
    if rate_mbit is None:
        subprocess.run(["tc", "qdisc", "del", "dev", "lo", "root"], capture_output=True)  # none yet is fine
        return
    _run("tc", "qdisc", "replace", "dev", "lo", "root", "tbf", "rate", f"{rate_mbit:g}mbit",
         "burst", f"{burst_kb:g}kb", "limit", "4mb")


def _run(*cmd: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise UserError("--rate-mbit", f"`{' '.join(cmd)}` failed: {done.stderr.strip() or done.returncode}",
                        "check that this machine allows network namespaces and tc qdiscs")
