"""A PPP worker written from ``protos/plugin_protocol.proto`` alone: grpcio and the generated
stubs, no worker SDK. It stands for "a worker in any language" in the tests: the conformance
kit must pass it, a runtime added at run time runs it, and ``--fault`` breaks the protocol on
purpose so that the kit's failures can be tested.

    python tests/support/proto_worker.py --unix PATH [--proto PATH] [--fault NAME] [--max-concurrency N]

Primitive ``shout``: ``{"text": str, "repeat": int = 1}`` → ``{"text": TEXT * repeat, "length": n}``,
one Progress per step, results over 1 MiB as ResultChunk messages.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

# How a supervisor (or the conformance kit) starts this worker: RuntimeSpec placeholders.
COMMAND = [
    "{python}",
    "{root}/tests/support/proto_worker.py",
    "--proto",
    "{root}/protos/plugin_protocol.proto",
    "--unix",
    "{socket}",
    "--max-concurrency",
    "{concurrency}",
]


def _stubs_from_the_proto() -> tuple[Any, Any]:
    """Compile ``--proto`` (default: the platform's protos/plugin_protocol.proto) with protoc
    into a private directory and import the result: nothing of the platform's code is used, and
    a sandboxed worker sees only the .proto file its command names."""
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--proto", default=str(Path(__file__).resolve().parents[2] / "protos" / "plugin_protocol.proto"))
    proto = Path(early.parse_known_args()[0].proto)
    out = tempfile.mkdtemp(prefix="proto-worker-")
    # In a process of its own: the compiler is tens of MB, which the worker's address-space limit
    # would otherwise lose for good.
    compiled = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{proto.parent}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            str(proto),
        ],
        capture_output=True,
        text=True,
    )
    if compiled.returncode != 0:
        raise SystemExit(f"protoc could not compile {proto}: {compiled.stderr}")
    sys.path.insert(0, out)
    return importlib.import_module(f"{proto.stem}_pb2"), importlib.import_module(f"{proto.stem}_pb2_grpc")


pb, pb_grpc = _stubs_from_the_proto()

PRIMITIVE = "shout"
CHUNK = 1024 * 1024
FAULTS = {
    "none": "a conforming worker",
    "no_terminal": "Invoke streams progress and ends without Completed or Failed",
    "two_terminals": "Invoke sends Completed, then Failed",
    "hang": "Invoke sends progress, then never finishes",
    "no_chunks": "large results go out as one Completed message",
    "wrong_code": "bad arguments are refused with code 'error' instead of invalid_input",
    "ignore_sigterm": "SIGTERM is ignored",
    "no_socket": "never listens",
}


def failed(code: str, message: str) -> pb.PluginMessage:
    return pb.PluginMessage(failed=pb.Failed(code=code, message=message))


class Worker(pb_grpc.PluginWorkerServicer):
    def __init__(self, fault: str) -> None:
        self.fault = fault

    def Health(self, request, context):
        return pb.HealthResponse(status=pb.HealthResponse.SERVING, primitives=[PRIMITIVE])

    def Init(self, request, context):
        return pb.InitResponse(ok=True, message="shout ready", primitives=[PRIMITIVE])

    def Invoke(self, request, context):
        if request.primitive != PRIMITIVE:
            yield failed("unknown_primitive", f"this worker hosts {PRIMITIVE!r}, not {request.primitive!r}")
            return
        code = "error" if self.fault == "wrong_code" else "invalid_input"
        try:
            args = json.loads(request.arguments.decode("utf-8") or "{}")
        except (UnicodeDecodeError, ValueError) as exc:
            yield failed(code, f"arguments are not a JSON document: {exc}")
            return
        text, repeat = args.get("text"), args.get("repeat", 1)
        if not isinstance(text, str) or not isinstance(repeat, int) or repeat < 1:
            yield failed(code, "'text' must be a string and 'repeat' a positive integer")
            return
        yield pb.PluginMessage(log=pb.Log(level=pb.Log.INFO, message=f"shouting {len(text)} characters"))
        yield pb.PluginMessage(progress=pb.Progress(percent=50, message="Shouting"))
        if self.fault == "hang":
            time.sleep(3600)
        if self.fault == "no_terminal":
            return
        output = json.dumps({"text": text.upper() * repeat, "length": len(text) * repeat}).encode()
        if len(output) > CHUNK and self.fault != "no_chunks":
            for index, start in enumerate(range(0, len(output), CHUNK)):
                yield pb.PluginMessage(result_chunk=pb.ResultChunk(data=output[start : start + CHUNK], index=index))
            output = b""
        yield pb.PluginMessage(completed=pb.Completed(output=output))
        if self.fault == "two_terminals":
            yield failed("internal", "and then it failed")


def die_with_parent() -> None:
    """Exit when the supervisor (PPP_PARENT_PID) dies: PR_SET_PDEATHSIG, as the SDKs do."""
    if parent := os.environ.get("PPP_PARENT_PID"):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)
        if os.getppid() != int(parent):
            os._exit(1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--unix", required=True)
    parser.add_argument("--fault", choices=sorted(FAULTS), default="none")
    parser.add_argument("--max-concurrency", type=int, default=4)
    parser.add_argument("--proto", help="the plugin_protocol.proto to compile (read at import)")
    options = parser.parse_args()
    die_with_parent()
    if options.fault == "no_socket":
        threading.Event().wait()
    os.umask(0o077)
    # Small thread stacks: under the supervisor's address-space limit, 8 MiB stacks run out fast.
    threading.stack_size(512 * 1024)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=options.max_concurrency + 2),
        options=[("grpc.max_send_message_length", 64 * 1024 * 1024)],
    )
    pb_grpc.add_PluginWorkerServicer_to_server(Worker(options.fault), server)
    server.add_insecure_port(f"unix:{options.unix}")
    server.start()
    stop = threading.Event()
    if options.fault == "ignore_sigterm":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.wait(0.2):  # a Python signal handler runs only when the main thread wakes
        pass
    server.stop(grace=0.5).wait()


if __name__ == "__main__":
    main()
