"""fork_bomb: forks without end (every child forks too); a pids limit must stop it.

Docker: ``--pids-limit``. Process backend: the worker's pids cgroup. It refuses to start
without a pids limit it can see, so that a machine without one is never brought down by a
test. The invocation then runs into its timeout (504); the worker and every process it made
are killed.
"""

import os
import time
from pathlib import Path

from ppp_sdk import InvocationContext, PluginError

from plugins.hostile import hostile_plugin

plugin = hostile_plugin("fork_bomb", "Fork without end, inside a pids limit only.")


def pids_limit() -> int | None:
    """The pids.max of this process's cgroup, None when there is no limit (or no cgroup)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "pids" in controllers.split(","):
            candidates = [Path(f"/sys/fs/cgroup/pids{path}/pids.max"), Path("/sys/fs/cgroup/pids/pids.max")]
        elif controllers == "":
            candidates = [Path(f"/sys/fs/cgroup{path}/pids.max"), Path("/sys/fs/cgroup/pids.max")]
        else:
            continue
        for candidate in candidates:
            # The machine's root cgroup has no pids.max; "/" with one is a cgroup namespace's root
            # (a container's, a sandboxed worker's): its own cgroup.
            if candidate.exists():
                value = candidate.read_text().strip()
                return None if value == "max" else int(value)
    return None


@plugin.handler
def bomb(args: dict, ctx: InvocationContext) -> dict:
    limit = pids_limit()
    if limit is None or limit > 4096:
        raise PluginError(f"refusing to fork without a pids limit (found {limit})", code="not_contained")
    original = os.getpid()
    print(f"fork bomb: pids limit {limit}", flush=True)
    reported = False
    while True:
        try:
            os.fork()  # parent and child both go on forking
        except OSError as exc:
            if os.getpid() == original and not reported:
                print(f"fork bomb: fork failed at the limit: {exc}", flush=True)
                reported = True
            time.sleep(0.01)
