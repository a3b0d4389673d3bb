# The platform's image: the gateway (`manage.py rungateway`) and the runtime supervisors
# (`manage.py runsupervisor`) are one image; the command chooses. compose.yml builds it.
#
#   docker build -t plugin-platform:latest .
#   docker build --build-arg BASE_IMAGE=registry.example.com/python:3.12-slim -t plugin-platform:latest .
#
# The base needs pip and a way to PyPI during the build. Worker images are separate
# (plugin_workers/python, plugin_workers/java; docs/DOCKER.md): supervisors on the docker
# backend start workers from them. See docs/DEPLOYMENT.md.
# No "# syntax=" line: the legacy builder would try to pull it.
ARG BASE_IMAGE=python:3.12-slim

# Generated gRPC code is not committed. grpcio-tools (a dev requirement) makes it in this stage
# and stays out of the final image.
FROM ${BASE_IMAGE} AS codegen
WORKDIR /src
COPY requirements.txt requirements-dev.txt ./
RUN python3 -m pip install --no-cache-dir --disable-pip-version-check \
        "grpcio-tools==$(sed -n 's/^grpcio-tools==//p' requirements-dev.txt)" \
        "protobuf==$(sed -n 's/^protobuf==//p' requirements.txt)"
COPY protos/ protos/
COPY platform_core/__init__.py platform_core/codegen.py platform_core/
RUN python3 -m platform_core.codegen

FROM ${BASE_IMAGE}
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY requirements.txt ./
RUN python3 -m pip install -r requirements.txt
COPY manage.py pyproject.toml ./
COPY platform_core/ platform_core/
COPY dashboard/ dashboard/
COPY templates/ templates/
COPY static/ static/
# The Python SDK and plugins, for supervisors on the process backend.
COPY plugin_workers/python/ plugin_workers/python/
COPY --from=codegen /src/platform_core/rpc/_gen/ platform_core/rpc/_gen/
COPY --from=codegen /src/plugin_workers/python/ppp_sdk/_gen/ plugin_workers/python/ppp_sdk/_gen/
# Byte-compiled now: the running containers never write .pyc files.
RUN python3 -m compileall -q platform_core dashboard plugin_workers/python \
    && mkdir -p /var/lib/plugin-platform \
    && chown 65534:65534 /var/lib/plugin-platform
ENV PYTHONDONTWRITEBYTECODE=1 \
    PLATFORM_VAR_DIR=/var/lib/plugin-platform \
    SUPERVISOR_SOCKET_ROOT=/run/plugin-platform
EXPOSE 8080 9091 9092
# The gateway runs as nobody: worker sockets belong to uid 65534 (mode 0700), and the gateway
# connects to them without any capability. Supervisors run as root (compose.yml): they hold the
# Docker socket and hand each worker directory to uid 65534.
USER 65534:65534
CMD ["python3", "manage.py", "rungateway", "--bind", "0.0.0.0", "--port", "8080"]
