"""The one place that imports generated gRPC code; everything else imports from here."""

from platform_core.rpc._gen import plugin_protocol_pb2 as ppp_pb2
from platform_core.rpc._gen import plugin_protocol_pb2_grpc as ppp_grpc
from platform_core.rpc._gen import runtime_supervisor_pb2 as sup_pb2
from platform_core.rpc._gen import runtime_supervisor_pb2_grpc as sup_grpc

# Channel options for Unix-socket and loopback peers: reconnect fast (the default backoff of
# about a second would dominate a worker's start-up), and allow large results.
FAST_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 10),
    ("grpc.min_reconnect_backoff_ms", 10),
    ("grpc.max_reconnect_backoff_ms", 200),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.enable_retries", 0),
]

__all__ = ["FAST_CHANNEL_OPTIONS", "ppp_grpc", "ppp_pb2", "sup_grpc", "sup_pb2"]
