"""Ctrl-C as one line at any moment: the command's processes never see SIGINT, one watcher thread does.

A terminal sends Ctrl-C to every process of the foreground group. Worker processes that are starting up or
waiting for work would each die with their own traceback, so while a command runs SIGINT is blocked in
this process; threads and processes started meanwhile inherit the block (child processes keep it across
exec), so they never raise KeyboardInterrupt (multiprocessing's resource tracker, which would unblock it
on start-up, is started first). A watcher thread takes the signal with `sigwait`, raises
KeyboardInterrupt in the main thread and ends the worker processes quietly (SIGTERM), so a pool waiting
on them returns at once. Finished runs are on disk; an unfinished one is redone on the next attempt.
"""

from __future__ import annotations

import _thread
import multiprocessing
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

_CAN_BLOCK = hasattr(signal, "pthread_sigmask") and hasattr(signal, "sigwait")
if _CAN_BLOCK:
    from multiprocessing import resource_tracker


@contextmanager
def interrupts_to_main_thread() -> Iterator[None]:
    """While inside, Ctrl-C raises KeyboardInterrupt in the main thread only and stops worker processes.
    Outside the main thread or where signals cannot be blocked (Windows), Python's default applies."""
    if not _CAN_BLOCK or threading.current_thread() is not threading.main_thread():
        yield
        return
    resource_tracker.ensure_running()  # CPython unblocks SIGINT in the thread that starts it: start it first
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    if signal.SIGINT in previous:  # already blocked by whoever called us: leave their arrangement alone
        yield
        return
    watcher = _Watcher()
    watcher.start()
    try:
        yield
    finally:
        watcher.stop()
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class _Watcher(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="fedsim-interrupt-watcher", daemon=True)
        self._stopping = False

    def run(self) -> None:
        signal.sigwait({signal.SIGINT})
        if self._stopping:
            return
        _thread.interrupt_main()  # KeyboardInterrupt at the main thread's next Python instruction
        for child in multiprocessing.active_children():
            child.terminate()

    def stop(self) -> None:
        """End the watcher: a SIGINT aimed at it (blocked there, so `sigwait` takes it) with nothing to do."""
        self._stopping = True
        if self.is_alive() and self.ident is not None:
            with suppress(OSError):  # it ended in between
                signal.pthread_kill(self.ident, signal.SIGINT)
        self.join()
