"""How a registry entry is described to a runtime supervisor (``PluginRef`` message)."""

from __future__ import annotations

from platform_core.registry.models import PluginSpec, WorkerMode
from platform_core.rpc import sup_pb2
from platform_core.runtimes import RuntimeSpec


def runtime_spec_message(spec: RuntimeSpec) -> sup_pb2.RuntimeSpec:
    return sup_pb2.RuntimeSpec(
        name=spec.name,
        command=spec.command,
        workdir=spec.workdir,
        env=dict(spec.env),
        image=spec.image,
        container_command=spec.container_command,
        no_address_space_limit=not spec.limit_address_space,
        zygote_command=spec.zygote_command,
        zygote_args=spec.zygote_args,
    )


def plugin_ref_message(plugin: PluginSpec) -> sup_pb2.PluginRef:
    """The plugin with its runtime's recipe (load it with ``select_related("runtime")``)."""
    pool = None
    if plugin.mode == WorkerMode.POOLED:
        pool = sup_pb2.PoolSpec(
            min_idle=plugin.min_idle,
            max_workers=plugin.max_workers,
            max_concurrency=plugin.max_concurrency,
            idle_timeout_ms=int(plugin.idle_timeout_s * 1000),
            max_uses=plugin.max_uses,
            queue_timeout_ms=int(plugin.queue_timeout_s * 1000),
        )
    return sup_pb2.PluginRef(
        name=plugin.name,
        runtime=plugin.runtime_id,
        runtime_spec=runtime_spec_message(plugin.runtime.spec()),
        image=plugin.image,
        entrypoint=plugin.entrypoint,
        backend=plugin.backend,
        limits=sup_pb2.ResourceLimits(memory_bytes=plugin.memory_mb * 1024 * 1024, cpus=plugin.cpus, pids=plugin.pids),
        pool=pool,
    )
