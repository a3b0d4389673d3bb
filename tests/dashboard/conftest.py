# The supervisor tests' private socket root (checked for leftover workers), for the workers board.
from tests.supervisor.conftest import socket_root  # noqa: F401
