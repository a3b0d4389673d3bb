import pytest

from tests.support.platform import Platform


@pytest.fixture(scope="session")
def platform():
    """A real platform (python and node supervisors + daphne gateway) for the whole e2e session."""
    running = Platform(runtimes=("python", "node")).start()
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
    platform.add_plugin_variant(base, name, **fields)


@pytest.fixture(autouse=True)
def _fresh_process_caches():
    """Per-process caches (registry entries, API keys) must not outlive a test's database."""
    from platform_core.registry.selectors import registry_cache_clear
    from platform_core.tenancy.services import api_key_cache_clear

    registry_cache_clear()
    api_key_cache_clear()
    yield
    registry_cache_clear()
    api_key_cache_clear()


@pytest.fixture(scope="session", autouse=True)
def _no_work_directory_left():
    """Every platform a test started cleans up after itself: no process, no /tmp/ppe-* directory."""
    yield
    import os

    if os.environ.get("KEEP_TEST_DIRS") != "1":
        left = [str(path) for path in Platform.made if path.exists()]
        assert not left, f"test platforms left their work directories: {left}"
