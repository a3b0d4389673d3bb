"""``ppctl``: invoke plugins, follow, list and cancel invocations from a shell or a script.

    ppctl invoke PLUGIN key=value …   run it, progress live (a bar on a terminal, lines otherwise), the result
    ppctl invoke PLUGIN … --async     queue it; print its id
    ppctl get ID [--wait]             one invocation (--wait: follow it to its end)
    ppctl cancel ID                   cancel a queued or running invocation
    ppctl ls [--plugin P] [--status S] [--limit N]
    ppctl workers | ppctl plugins

The API key comes from ``PP_API_KEY``, else ``var/dev_api_key`` (``make run`` writes it); the
gateway's address from ``PP_URL`` (default http://127.0.0.1:8080). ``--json`` prints the API's
JSON. Exit codes (``EXIT`` below): 0 done, 1 the plugin or its worker failed, 2 usage, 3 refused
(bad input, unknown plugin or invocation, already finished), 4 try again later (busy, timeout,
rate limited), 5 cancelled, 6 not authenticated, 7 the gateway cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

EXIT = {"ok": 0, "failed": 1, "usage": 2, "refused": 3, "retry": 4, "cancelled": 5, "unauthenticated": 6, "down": 7}
DEFAULT_URL = "http://127.0.0.1:8080"
REPO = Path(__file__).resolve().parent.parent


class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}")
        self.status, self.body = status, body


class Unreachable(Exception):
    pass


def exit_code(status: int, body: Any = None) -> int:
    """The exit code of an HTTP status (and error body)."""
    code = (body or {}).get("error", {}).get("code") if isinstance(body, dict) else None
    if status < 300:
        return EXIT["ok"]
    if code == "cancelled":
        return EXIT["cancelled"]
    if status == 401:
        return EXIT["unauthenticated"]
    if status in (429, 503, 504):
        return EXIT["retry"]
    if status < 500:
        return EXIT["refused"]
    return EXIT["failed"]


def api_key() -> str:
    if key := os.environ.get("PP_API_KEY", "").strip():
        return key
    for directory in (os.environ.get("PLATFORM_VAR_DIR"), "var", str(REPO / "var")):
        if directory and (path := Path(directory) / "dev_api_key").is_file():
            return path.read_text().strip()
    return ""


class Client:
    def __init__(self, url: str, key: str, timeout_s: float = 3600.0) -> None:
        self.url, self.key, self.timeout_s = url.rstrip("/"), key, timeout_s

    def _request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.key}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            return urllib.request.urlopen(request, timeout=self.timeout_s)
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = {"error": {"code": "http_error", "message": raw.decode(errors="replace")}}
            raise ApiError(exc.code, payload) from None
        except (urllib.error.URLError, OSError) as exc:
            raise Unreachable(f"cannot reach the gateway at {self.url}: {getattr(exc, 'reason', exc)}") from None

    def json(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        with self._request(method, path, body, headers) as response:
            return response.status, json.loads(response.read() or b"null")

    def events(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None):
        """(status, SSE messages as (event, data)) — or a JSON answer as one message ("json", body)."""
        response = self._request(method, path, body, {"Accept": "text/event-stream", **(headers or {})})
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            with response:
                return response.status, iter([("json", json.loads(response.read()))])
        return response.status, _sse(response)


def _sse(response: Any) -> Iterator[tuple[str, Any]]:
    event, data = "message", []
    with response:
        for raw in response:
            line = raw.decode().rstrip("\r\n")
            if not line:
                if data:
                    yield event, json.loads("\n".join(data))
                event, data = "message", []
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())


def parse_arguments(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs as a JSON object; each value is JSON when it parses (3, true, [1]), else a string."""
    arguments: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"expected key=value, got {pair!r}")
        try:
            arguments[key] = json.loads(value)
        except ValueError:
            arguments[key] = value
    return arguments


class Progress:
    """Progress on stderr: a redrawn bar on a terminal, one line per step otherwise."""

    def __init__(self, out: TextIO, quiet: bool) -> None:
        self.out, self.quiet, self.tty, self.drawn = out, quiet, out.isatty(), False

    def show(self, event: str, data: dict[str, Any]) -> None:
        if self.quiet:
            return
        if event == "progress":
            percent, message = float(data.get("percent", 0)), data.get("message", "")
            if self.tty:
                filled = int(percent / 100 * 30)
                self.out.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {percent:5.1f}% {message[:60]:<60}")
                self.drawn = True
            else:
                self.out.write(f"progress {percent:g}% {message}\n")
        elif event in ("accepted", "allocated", "started", "log", "queued", "cancelled"):
            self.end_line()
            detail = data.get("message") or data.get("worker_id") or data.get("invocation_id") or data.get("detail", "")
            self.out.write(f"{event} {detail}\n")
        self.out.flush()

    def end_line(self) -> None:
        if self.drawn:
            self.out.write("\n")
            self.drawn = False


def _print_outcome(status: int, body: Any, as_json: bool) -> int:
    if status < 300:
        result = body.get("result", body) if not as_json else body
        print(json.dumps(result, indent=None if as_json else 2))
    else:
        if as_json:
            print(json.dumps(body))
        error = (body or {}).get("error", {})
        print(f"error {status} {error.get('code', '')}: {error.get('message', '')}", file=sys.stderr)
    return exit_code(status, body)


def cmd_invoke(client: Client, args: argparse.Namespace) -> int:
    try:
        arguments = json.loads(args.data) if args.data else parse_arguments(args.arguments)
    except ValueError as exc:
        print(f"ppctl: {exc}", file=sys.stderr)
        return EXIT["usage"]
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}
    if args.async_:
        status, body = client.json("POST", f"/api/v1/plugins/{args.plugin}/invocations", arguments, headers)
        print(json.dumps(body) if args.json else body["invocation_id"])
        return EXIT["ok"]
    status, messages = client.events("POST", f"/api/v1/plugins/{args.plugin}/invoke", arguments, headers)
    return _follow(messages, status, args)


def _follow(messages: Iterator[tuple[str, Any]], status: int, args: argparse.Namespace) -> int:
    progress = Progress(sys.stderr, args.quiet)
    for event, data in messages:
        if event == "json":
            progress.end_line()
            return _print_outcome(status, data, args.json)
        if event in ("result", "error"):
            progress.end_line()
            return _print_outcome(data.pop("http_status", 200) if event == "error" else 200, data, args.json)
        progress.show(event, data)
    progress.end_line()
    print("ppctl: the stream ended without an outcome", file=sys.stderr)
    return EXIT["retry"]


def cmd_get(client: Client, args: argparse.Namespace) -> int:
    if args.wait:
        status, messages = client.events("GET", f"/api/v1/invocations/{args.id}/events")
        return _follow(messages, status, args)
    _, body = client.json("GET", f"/api/v1/invocations/{args.id}")
    if args.json:
        print(json.dumps(body))
    else:
        body.pop("trace", None)
        print(json.dumps(body, indent=2))
    return EXIT["ok"]


def cmd_cancel(client: Client, args: argparse.Namespace) -> int:
    _, body = client.json("POST", f"/api/v1/invocations/{args.id}/cancel")
    print(json.dumps(body) if args.json else f"{args.id} {body.get('status')}")
    return EXIT["ok"]


def _listing(args: argparse.Namespace, body: Any, headings: list[str], rows: list[list[Any]]) -> int:
    """The API's JSON with ``--json``, else a table of ``rows`` under ``headings``."""
    if args.json:
        print(json.dumps(body))
        return EXIT["ok"]
    cells = [headings, *[[("" if c is None else str(c)) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headings))]
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return EXIT["ok"]


def cmd_ls(client: Client, args: argparse.Namespace) -> int:
    query = {"page_size": str(args.limit)}
    if args.plugin:
        query["plugin"] = args.plugin
    if args.status:
        query["status"] = args.status
    _, body = client.json("GET", "/api/v1/invocations?" + urllib.parse.urlencode(query))
    rows = [
        [i["id"], i["plugin"], i["status"], i["http_status"], i["timings_ms"]["total"], i["created_at"][:19]]
        for i in body["results"]
    ]
    return _listing(args, body, ["ID", "PLUGIN", "STATUS", "HTTP", "TOTAL_MS", "CREATED"], rows)


def cmd_workers(client: Client, args: argparse.Namespace) -> int:
    _, body = client.json("GET", "/api/v1/workers")
    rows = []
    for supervisor in body["supervisors"]:
        rows.append([supervisor["runtime"], supervisor["address"], "up" if supervisor["up"] else "down", "", "", ""])
        for worker in supervisor["workers"]:
            rows.append(["", "", "", worker.get("worker_id"), worker.get("state"), worker.get("plugin", "")])
    return _listing(args, body, ["RUNTIME", "ADDRESS", "SUPERVISOR", "WORKER", "STATE", "PLUGIN"], rows)


def cmd_plugins(client: Client, args: argparse.Namespace) -> int:
    _, body = client.json("GET", "/api/v1/plugins")
    rows = [[p["name"], p["operation"], p["runtime"], p["mode"], p["description"][:60]] for p in body["plugins"]]
    return _listing(args, body, ["NAME", "OPERATION", "RUNTIME", "MODE", "DESCRIPTION"], rows)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="ppctl", description="The plugin platform's command line (its REST API).")
    top.add_argument("--url", default=os.environ.get("PP_URL", DEFAULT_URL), help="gateway (PP_URL)")
    top.add_argument("--json", action="store_true", help="print the API's JSON")
    commands = top.add_subparsers(dest="command", required=True)
    invoke = commands.add_parser("invoke", help="run a plugin: ppctl invoke slow_count steps=3")
    invoke.add_argument("plugin")
    invoke.add_argument("arguments", nargs="*", help="key=value (values are JSON when they parse)")
    invoke.add_argument("--data", "-d", help="the arguments as one JSON document instead")
    invoke.add_argument("--async", dest="async_", action="store_true", help="queue it and print its id")
    invoke.add_argument("--idempotency-key", help="a retry with the same key gets the first outcome")
    invoke.add_argument("--quiet", "-q", action="store_true", help="no progress, just the result")
    invoke.set_defaults(run=cmd_invoke)
    get = commands.add_parser("get", help="one invocation")
    get.add_argument("id")
    get.add_argument("--wait", action="store_true", help="follow it (progress) to its end; exit code by outcome")
    get.add_argument("--quiet", "-q", action="store_true")
    get.set_defaults(run=cmd_get)
    cancel = commands.add_parser("cancel", help="cancel a queued or running invocation")
    cancel.add_argument("id")
    cancel.set_defaults(run=cmd_cancel)
    ls = commands.add_parser("ls", help="invocation history, newest first")
    ls.add_argument("--plugin")
    ls.add_argument("--status")
    ls.add_argument("--limit", type=int, default=20)
    ls.set_defaults(run=cmd_ls)
    commands.add_parser("workers", help="supervisors and their workers").set_defaults(run=cmd_workers)
    commands.add_parser("plugins", help="the registry").set_defaults(run=cmd_plugins)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not (key := api_key()):
        print("ppctl: no API key: set PP_API_KEY (or run `make run`, which writes var/dev_api_key)", file=sys.stderr)
        return EXIT["unauthenticated"]
    client = Client(args.url, key)
    try:
        return args.run(client, args)
    except ApiError as exc:
        return _print_outcome(exc.status, exc.body, args.json)
    except Unreachable as exc:
        print(f"ppctl: {exc}", file=sys.stderr)
        return EXIT["down"]
    except KeyboardInterrupt:
        return 130
