import pytest

from tests.support.platform import Platform


@pytest.fixture(scope="session")
def platform():
    """A real platform (python supervisor + daphne gateway) for the whole e2e session."""
    running = Platform().start()
    # Variants of the built-in plugins: a short timeout for the timeout flow, pools for pooled mode.
    add_plugin_variant(running, "slow_count", "slow_count_short", timeout_s=1.0)
    add_plugin_variant(
        running,
        "subtract_numbers",
        "subtract_pooled",
        mode="pooled",
        min_idle=1,
        max_workers=2,
        max_concurrency=2,
        queue_timeout_s=1.0,
    )
    add_plugin_variant(
        running,
        "slow_count",
        "slow_count_pooled",
        mode="pooled",
        min_idle=0,
        max_workers=1,
        max_concurrency=1,
        queue_timeout_s=0.3,
    )
    yield running
    running.stop()
    leftovers = running.leftover_workers()
    assert not leftovers, f"worker processes survived their supervisor: {leftovers}"


@pytest.fixture
def api(platform):
    with platform.client() as client:
        yield client


def add_plugin_variant(platform: Platform, base: str, name: str, **fields) -> None:
    """Register a copy of plugin ``base`` under ``name`` (same worker primitive) with other settings."""
    assignments = "; ".join(f"s.{key} = {value!r}" for key, value in fields.items())
    platform.manage(
        "shell",
        "-c",
        (
            f"from platform_core.registry.models import PluginSpec as P; s = P.objects.get(name={base!r}); "
            f"s.pk = None; s.primitive = s.primitive or s.name; s.name = {name!r}; s.operation = None; {assignments}; "
            "s.full_clean(); s.save()"
        ),
    )
