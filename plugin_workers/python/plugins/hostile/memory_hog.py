"""memory_hog: allocates memory without end; its memory limit must stop it.

Docker: the memory cgroup's OOM killer kills it (exit 137, an "oom" event). Process backend:
its address-space rlimit makes the allocation fail (MemoryError). Either way the API answers
502 ``memory_limit_exceeded`` naming the limit.
"""

from ppp_sdk import InvocationContext

from plugins.hostile import hostile_plugin

plugin = hostile_plugin("memory_hog", "Allocate 8 MiB at a time, forever.")


@plugin.handler
def hog(args: dict, ctx: InvocationContext) -> dict:
    ctx.progress(0, "allocating")
    chunks = []
    while True:
        # Filled, not just reserved: untouched pages would cost no memory at all.
        chunks.append(bytearray(b"\x01") * (8 << 20))
