"""The same call as a shell command: ``curl`` against the REST API, with the caller's key left out."""

from __future__ import annotations

import json
import shlex
from typing import Any

# The key is never shown: the command reads it from the caller's shell.
KEY_PLACEHOLDER = "$API_KEY"


def curl_command(*, base_url: str, path: str, arguments: Any) -> str:
    """``curl`` posting ``arguments`` (JSON) to ``base_url + path``, authorized by ``$API_KEY``."""
    body = json.dumps(arguments, separators=(", ", ": "))
    return (
        f"curl -s -X POST {shlex.quote(base_url.rstrip('/') + path)} \\\n"
        f'  -H "Authorization: Bearer {KEY_PLACEHOLDER}" \\\n'
        f"  -H 'content-type: application/json' \\\n"
        f"  -d {shlex.quote(body)}"
    )


def invoke_path(plugin: str) -> str:
    return f"/api/v1/plugins/{plugin}/invoke"


def calculate_path(operation: str) -> str:
    return f"/api/v1/calculate/{operation}"
