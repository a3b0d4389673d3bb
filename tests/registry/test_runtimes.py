"""Runtimes as data: recipe checks, placeholders, the registry entry, the message to a supervisor."""

from __future__ import annotations

import sys
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from platform_core.registry.models import PluginSpec, Runtime
from platform_core.registry.refs import plugin_ref_message
from platform_core.registry.services import RuntimeInUse, runtime_add, runtime_remove
from platform_core.runtimes import (
    BUILTIN_RUNTIMES,
    ROOT,
    RuntimeSpec,
    render,
    unavailable,
    worker_id_base,
    worker_values,
)
from platform_core.supervisor.backends.process import Launcher
from platform_core.supervisor.grpc_service import plugin_ref
from platform_core.supervisor.model import Limits, PluginRef, PoolSpec


@pytest.mark.parametrize(
    ("command", "problem"),
    [
        ([], "the command is empty"),
        (["w", "--unix", "/tmp/x.sock"], "put {socket} where the socket path goes"),
        (["w", "--unix", "{sock}"], "unknown placeholder {sock} in '{sock}'"),
        (["w", "--unix", "{socket"], "malformed placeholder in '{socket'"),
        (["w", "{socket}", "{socket.attr}"], "unknown placeholder {socket.attr}"),
    ],
)
def test_bad_commands_are_refused_with_the_reason(command, problem):
    errors = RuntimeSpec.create("x", command).errors()

    assert any(problem in error for error in errors), errors


def test_builtin_recipes_are_valid_and_host_placeholders_stay_on_the_host():
    assert all(not spec.errors() for spec in BUILTIN_RUNTIMES.values())
    spec = RuntimeSpec.create("x", ["w", "{socket}"], container_command=["{root}/w", "{socket}"])
    assert "unknown placeholder {root}" in spec.errors()[0], "a container cannot see the host's directory"


def test_a_command_is_rendered_per_worker():
    values = worker_values(socket="/s/w.sock", entrypoint="p", concurrency=3, memory_bytes=512 * 1024 * 1024)

    rendered = render(
        ["x", "--unix", "{socket}", "{entrypoint}", "-c{concurrency}", "-Xmx{heap_mb}m", "{{lit}}"], values
    )

    assert rendered == ["x", "--unix", "/s/w.sock", "p", "-c3", "-Xmx256m", "{lit}"]


def test_a_launcher_resolves_root_and_python_on_its_host():
    launcher = Launcher.from_spec(BUILTIN_RUNTIMES["python"])
    plugin = PluginRef(name="s", runtime="python", entrypoint="plugins.s:plugin", pool=PoolSpec(max_concurrency=2))

    command = launcher.command(plugin, ROOT / "w.sock")

    assert command[0] == sys.executable
    assert command[-5:] == ["plugins.s:plugin", "--unix", str(ROOT / "w.sock"), "--max-concurrency", "2"]
    assert launcher.cwd == ROOT / "plugin_workers" / "python"
    assert launcher.env["PYTHONPATH"] == str(ROOT / "plugin_workers" / "python")
    assert launcher.zygote_argv and not Launcher.from_spec(BUILTIN_RUNTIMES["java"]).limit_address_space


def test_worker_id_ranges_keep_the_seeds_and_derive_the_rest():
    assert (worker_id_base("java"), worker_id_base("python")) == (10000, 20000)
    bases = {name: worker_id_base(name) for name in ("node", "go", "ruby", "rust")}
    assert all(30000 <= base <= 990000 and base % 10000 == 0 for base in bases.values()), bases
    assert worker_id_base("node") == worker_id_base("node"), "the same on every host"


def test_unavailable_says_what_is_missing():
    assert unavailable(RuntimeSpec.create("x", ["no-such-program-here", "{socket}"])) == (
        "'no-such-program-here' is not installed (not found on PATH)"
    )
    missing = RuntimeSpec.create("x", ["sh", "{root}/no/such/file.jar", "{socket}"])
    assert unavailable(missing) == "no/such/file.jar is missing (build it: `make`)"
    assert unavailable(BUILTIN_RUNTIMES["python"]) is None


def test_the_recipe_survives_the_trip_to_a_supervisor(db):
    plugin = PluginSpec.objects.select_related("runtime").get(name="slow_count_java")

    ref = plugin_ref(plugin_ref_message(plugin))

    assert ref.runtime == "java" and ref.runtime_spec == BUILTIN_RUNTIMES["java"]
    assert ref.launch_spec == BUILTIN_RUNTIMES["java"]
    assert PluginRef(name="x", runtime="python").launch_spec == BUILTIN_RUNTIMES["python"], "the built-in fallback"
    assert PluginRef(name="x", runtime="cobol", limits=Limits()).launch_spec is None


def test_the_migration_made_the_builtin_runtimes_and_plugins_name_them(db):
    assert set(Runtime.objects.values_list("name", flat=True)) >= {"python", "java", "node"}
    assert PluginSpec.objects.get(name="count_primes").runtime.spec() == BUILTIN_RUNTIMES["node"]


def test_runtime_add_validates_and_remove_refuses_a_runtime_in_use(db):
    runtime, created = runtime_add(name="shout", command=["{python}", "w.py", "--unix", "{socket}"], env={"A": "1"})
    assert created and runtime.spec().env == (("A", "1"),)
    with pytest.raises(ValidationError, match="already exists"):
        runtime_add(name="shout", command=["w", "{socket}"])
    runtime_add(name="shout", command=["w2", "{socket}"], replace=True)
    assert Runtime.objects.get(name="shout").command == ["w2", "{socket}"]
    with pytest.raises(ValidationError, match="lower-case letters"):
        runtime_add(name="Bad-Name", command=["w", "{socket}"])
    PluginSpec.objects.create(name="loud", runtime=runtime, entrypoint="x")
    with pytest.raises(RuntimeInUse, match="used by plugin\\(s\\) loud"):
        runtime_remove(name="shout")
    PluginSpec.objects.filter(name="loud").delete()
    runtime_remove(name="shout")
    assert not Runtime.objects.filter(name="shout").exists()


def test_runtime_command_line(db):
    out = StringIO()
    call_command("runtime", "add", "tiny", "--command", "tiny-worker --unix {socket}", "--env", "K=V", stdout=out)
    assert "runtime tiny added: tiny-worker --unix '{socket}'" in out.getvalue()
    call_command("runtime", "list", stdout=(listing := StringIO()))
    assert "'tiny-worker' is not installed" in listing.getvalue()
    call_command("runtime", "show", "tiny", stdout=(shown := StringIO()))
    assert '"K": "V"' in shown.getvalue()
    with pytest.raises(CommandError, match=r"unknown placeholder \{sockett\}"):
        call_command("runtime", "add", "tiny2", "--command", "w --unix {sockett}")
    with pytest.raises(CommandError, match="expected KEY=VALUE"):
        call_command("runtime", "add", "tiny3", "--command", "w {socket}", "--env", "novalue")
    call_command("runtime", "remove", "tiny", stdout=StringIO())
    with pytest.raises(CommandError, match="no runtime 'tiny'"):
        call_command("runtime", "remove", "tiny")


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_plugins_of_runtimes_it_does_not_know():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    executor.migrate([("registry", "0004_plugin_pool")])
    old = executor.loader.project_state([("registry", "0004_plugin_pool")]).apps.get_model("registry", "PluginSpec")
    old.objects.create(name="legacy", runtime="cobol", entrypoint="x")
    try:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())

        legacy = PluginSpec.objects.select_related("runtime").get(name="legacy")
        assert legacy.runtime.name == "cobol" and legacy.runtime.command == []
        assert "give it a command" in legacy.runtime.description
        assert "the command is empty" in legacy.runtime.spec().errors()
    finally:
        PluginSpec.objects.filter(name="legacy").delete()
        Runtime.objects.filter(name="cobol").delete()


def test_only_superusers_may_write_runtimes_in_the_admin(db, client, admin_client):
    from django.contrib.auth.models import Permission, User

    staff = User.objects.create_user("staff", password="x", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(codename__endswith="_runtime"))
    client.force_login(staff)

    assert client.get("/admin/registry/runtime/add/").status_code == 403
    assert client.post("/admin/registry/runtime/add/", {"name": "evil"}).status_code == 403
    assert admin_client.get("/admin/registry/runtime/add/").status_code == 200
    page = admin_client.get("/admin/registry/runtime/")
    assert page.status_code == 200 and b"ppp_sdk" in page.content
