"""marker: leaves state behind on purpose and reports what an earlier invocation left.

Each invocation writes a marker file in its temp directory (HOME/TMPDIR on the process backend,
/tmp in a container), sets a module global and an environment variable, then answers with what
of these it found already there. On a worker that serves one invocation only (ephemeral, stem
cells included) it must never find anything: the stem-cell tests use it to show that nothing
of one invocation exists in the next (tests/supervisor/test_stemcells.py, tests/docker/).
"""

import os
import tempfile
from pathlib import Path

from ppp_sdk import InvocationContext

from plugins.hostile import hostile_plugin

plugin = hostile_plugin("marker", "Leave a marker behind; report markers found.")

MARKER = "ppp-marker.txt"
_seen: list[str] = []


@plugin.handler
def mark(args: dict, ctx: InvocationContext) -> dict:
    path = Path(tempfile.gettempdir()) / MARKER
    found = {
        "file": path.read_text() if path.exists() else "",
        "global": list(_seen),
        "environment": os.environ.get("PPP_MARKER", ""),
    }
    label = str(args.get("label", "marked"))
    path.write_text(label)
    _seen.append(label)
    os.environ["PPP_MARKER"] = label
    return {"found": found, "pid": os.getpid(), "temp_dir": str(path.parent)}
