from platform_core import codegen


def test_generated_grpc_code_matches_the_protos():
    assert codegen.stale_files() == [], "generated code is stale: run `make protos`"
