"""Runtime supervisor: starts, probes and stops plugin workers for one runtime.

Plain asyncio code (``service``), a worker backend per isolation technology (``backends``),
and a thin gRPC adapter (``grpc_service``). It imports nothing of the gateway or the ORM.
"""
