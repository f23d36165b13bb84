"""Facts about the machine fedsim runs on, read in one place."""

from __future__ import annotations

import os


def physical_memory_bytes(default: float = 16e9) -> float:
    """This machine's physical memory in bytes (`default` where the OS cannot say, e.g. Windows)."""
    if not hasattr(os, "sysconf"):
        return default
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
