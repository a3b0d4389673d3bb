from pathlib import Path

from platform_core import codegen

REPO = Path(__file__).resolve().parent.parent


def test_generated_grpc_code_matches_the_protos():
    assert codegen.stale_files() == [], "generated code is stale: run `make protos`"


def _pins(path: Path) -> dict[str, str]:
    pins = (line.split("==", 1) for line in path.read_text().splitlines() if "==" in line and not line.startswith("#"))
    return {name.strip(): version.strip() for name, version in pins}


def test_grpcio_and_its_code_generator_are_pinned_to_one_version():
    runtime, dev = _pins(REPO / "requirements.txt"), _pins(REPO / "requirements-dev.txt")
    assert runtime["grpcio"] == dev["grpcio-tools"]
    dockerfile = (REPO / "plugin_workers/python/Dockerfile").read_text()
    assert f"ARG GRPCIO_VERSION={runtime['grpcio']}\n" in dockerfile
    assert f"ARG PROTOBUF_VERSION={runtime['protobuf']}\n" in dockerfile
