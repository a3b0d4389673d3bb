"""Why a worker ended on its own: exit codes and signals turned into a cause people can act on.

Backends decide *whether* an exit was the worker's own (the process backend knows which signals
it sent; the docker backend hears the engine's OOM events); this module only names the cause.
"""

from __future__ import annotations

import signal

from platform_core.supervisor.model import ExitCause, Limits

# Signals a program raises against itself when it breaks (or the kernel sends for a bad access).
CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGILL, signal.SIGFPE}


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def memory_limit(limits: Limits) -> ExitCause:
    return ExitCause(
        "memory_limit", f"worker exceeded its memory limit ({limits.memory_bytes // (1024 * 1024)} MB) and was killed"
    )


def from_signal(signum: int, limits: Limits) -> ExitCause:
    """A worker killed by ``signum`` that nobody on the platform sent."""
    if signum == signal.SIGXCPU:
        return ExitCause(
            "cpu_time_limit",
            f"worker exceeded its CPU time limit ({limits.cpu_seconds} s) and was stopped (SIGXCPU)",
        )
    if signum == signal.SIGKILL:
        # The kernel also sends SIGKILL at the hard CPU time limit (SIGXCPU only below it).
        cpu = f"its CPU time limit ({limits.cpu_seconds} s), " if limits.cpu_seconds else ""
        return ExitCause(
            "killed",
            f"worker was killed by SIGKILL, not by the platform ({cpu}the kernel's OOM killer or an operator)",
        )
    if signum in CRASH_SIGNALS:
        return ExitCause("crashed", f"worker crashed ({signal_name(signum)})")
    return ExitCause("killed", f"worker was killed by {signal_name(signum)}")


def from_status(status: int) -> ExitCause:
    """A worker that exited by itself with ``status``."""
    return ExitCause("exited", f"worker exited by itself with code {status}")
