import pytest

from tests.support.platform import Platform


@pytest.fixture(scope="session")
def platform():
    """A real platform (python supervisor + daphne gateway) for the whole e2e session."""
    running = Platform().start()
    # A variant of slow_count with a short timeout, for the timeout flow.
    running.manage(
        "shell",
        "-c",
        (
            "from platform_core.registry.models import PluginSpec as P; s = P.objects.get(name='slow_count'); "
            "s.pk = None; s.primitive = s.name; s.name = 'slow_count_short'; s.timeout_s = 1.0; s.save()"
        ),
    )
    yield running
    running.stop()
    leftovers = running.leftover_workers()
    assert not leftovers, f"worker processes survived their supervisor: {leftovers}"


@pytest.fixture
def api(platform):
    with platform.client() as client:
        yield client
