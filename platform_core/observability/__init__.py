"""What operators plug in: OpenTelemetry traces (``tracing``), Prometheus metrics (``metrics``) and
structured logs (``logs``). docs/OBSERVABILITY.md describes them for the person who runs the platform.
"""
