"""fs_writer: writes into its temp directory (allowed) and next to its own code (must fail).

Docker: the root file system is read-only, only /tmp (its TMPDIR) is writable. On the process
backend nothing stops it (docs/RELIABILITY.md); it removes what it managed to write so that a
run there leaves nothing behind.
"""

import os
import tempfile
from pathlib import Path

from ppp_sdk import InvocationContext

from plugins.hostile import hostile_plugin

plugin = hostile_plugin("fs_writer", "Try to write inside and outside the temp directory.")


def _try_write(path: Path) -> str:
    try:
        path.write_text("written by a hostile plugin\n")
    except OSError as exc:
        return f"failed: {exc}"
    path.unlink()
    return "written (and removed again)"


@plugin.handler
def write(args: dict, ctx: InvocationContext) -> dict:
    name = f"fs-writer-{os.getpid()}.txt"
    return {
        "temp_dir": _try_write(Path(tempfile.gettempdir()) / name),
        "code_dir": _try_write(Path(__file__).resolve().parent / name),
    }
