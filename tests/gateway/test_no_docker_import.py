"""The gateway never imports the Docker SDK: only supervisors talk to a Docker Engine."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from tests.support.platform import REPO

GATEWAY_PACKAGES = ("platform_core.gateway", "platform_core.invocations", "platform_core.registry")
GATEWAY_MODULES = ("platform_core.asgi", "platform_core.urls")


def test_gateway_modules_do_not_import_docker():
    # A fresh interpreter: this test session itself imports docker (tests/docker).
    script = textwrap.dedent(
        f"""
        import importlib, pkgutil, sys
        import django
        django.setup()
        imported = []
        for package in {GATEWAY_PACKAGES!r}:
            module = importlib.import_module(package)
            imported.append(package)
            for info in pkgutil.walk_packages(module.__path__, prefix=package + "."):
                importlib.import_module(info.name)
                imported.append(info.name)
        for name in {GATEWAY_MODULES!r}:
            importlib.import_module(name)
            imported.append(name)
        assert len(imported) > 10, imported
        culprits = sorted(m for m in sys.modules if m == "docker" or m.startswith("docker."))
        print("docker modules:", culprits)
        sys.exit(1 if culprits else 0)
        """
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "platform_core.settings", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
