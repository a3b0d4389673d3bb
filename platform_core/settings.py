"""Settings for the plugin platform, read from environment variables.

Embedded defaults run on a laptop: SQLite, the in-memory channel layer, the ``process``
worker backend, everything on loopback. See README.md, "Configuration".
"""

import os
from datetime import timedelta
from pathlib import Path

from platform_core.env import (
    channel_layer_from_url,
    database_from_url,
    env_bool,
    env_choice,
    env_choices,
    env_float,
    env_int,
    env_int_list,
    env_map,
    env_str,
    local_secret_key,
)
from platform_core.observability.logs import logging_config
from platform_core.tls import tls_from_env

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("PLATFORM_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DJANGO_DEBUG", False)
# Production sets DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE); a laptop gets one made in var/.
SECRET_KEY = env_str("DJANGO_SECRET_KEY", "") or local_secret_key(VAR_DIR / "secret_key")
ALLOWED_HOSTS = [h for h in env_str("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver").split(",") if h]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "axes",
    "platform_core.registry",
    "platform_core.invocations",
    "platform_core.gateway",
    "platform_core.supervisor",
    "platform_core.tenancy",
    "dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "platform_core.gateway.middleware.ApiJsonErrorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last: turns a throttled login into its answer (docs/SECURITY.md).
    "axes.middleware.AxesMiddleware",
]

# Failed logins are throttled (django-axes, counted in the database, so across gateway processes):
# after LOGIN_FAILURE_LIMIT failures for one account, or from one client address, further attempts
# are refused with 429 and a message saying for how long, for LOGIN_COOLOFF_MINUTES.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_float("LOGIN_COOLOFF_MINUTES", 15.0))
AXES_LOCKOUT_PARAMETERS = [["username"], ["ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "dashboard/login_throttled.html"
AXES_VERBOSE = False

ROOT_URLCONF = "platform_core.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "dashboard.context.dashboard",
            ],
        },
    },
]
ASGI_APPLICATION = "platform_core.asgi.application"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"
WSGI_APPLICATION = None

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": env_str("SQLITE_PATH", str(VAR_DIR / "platform.sqlite3")),
        # WAL lets readers (admin, history) work while the gateway writes; wait, don't fail, on locks.
        "OPTIONS": {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
        # A file, not Django's shared-cache in-memory default: the history is written from its own
        # thread, and shared-cache SQLite fails ("table is locked") where a file database waits.
        # Per process: test runs side by side must not share (and destroy) one test database.
        "TEST": {"NAME": str(VAR_DIR / f"test-platform-{os.getpid()}.sqlite3")},
    }
}
# Production: PostgreSQL (DATABASE_URL=postgres://..., or DATABASE_URL_FILE); docs/DEPLOYMENT.md.
# Lower case: not a setting, so that the password is not shown where settings are.
if _database_url := env_str("DATABASE_URL", ""):
    DATABASES["default"] = database_from_url(_database_url, pool_size=env_int("DATABASE_POOL_SIZE", 10))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Live events reach the WebSockets of other gateway processes only through Redis (REDIS_URL).
PLATFORM_REDIS_URL = env_str("REDIS_URL", "")
PLATFORM_REDIS_PREFIX = env_str("REDIS_PREFIX", "asgi")
CHANNEL_LAYERS = {"default": channel_layer_from_url(PLATFORM_REDIS_URL, prefix=PLATFORM_REDIS_PREFIX)}
# Tenant quotas are shared by every gateway through Redis when it is configured (else per process).
PLATFORM_ADMISSION_REDIS_URL = PLATFORM_REDIS_URL
# How long a running invocation of a gateway that died may hold its tenant's concurrency slot (Redis).
PLATFORM_ADMISSION_SLOT_TTL_S = env_float("ADMISSION_SLOT_TTL_S", 900.0)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []
# Static files are served at the ASGI layer (platform_core/asgi.py) from the apps' and
# static/'s own folders (the finders): no collectstatic step. Not in a middleware: a sync
# middleware (WhiteNoise's) would push every API request through a thread and serialize them.
# A deployment behind a reverse proxy may set STATIC_ROOT, run collectstatic and serve it there.
STATIC_ROOT = env_str("STATIC_ROOT", "") or None

# Request bodies beyond this are refused before they are parsed (413 as JSON).
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("API_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)

# --- Plugin platform ----------------------------------------------------------------------
# Where each runtime's supervisor listens: "runtime=host:port[|host:port...],..."
PLATFORM_SUPERVISORS = env_map("SUPERVISORS", "python=127.0.0.1:9092,java=127.0.0.1:9091,node=127.0.0.1:9093")
# How often "dns:NAME:PORT" entries of SUPERVISORS are resolved again (platform_core/gateway/supervisor_discovery.py).
PLATFORM_SUPERVISOR_DISCOVERY_S = env_float("SUPERVISOR_DISCOVERY_INTERVAL_S", 10.0, minimum=0.1)
# Default worker backend of a supervisor started without --backend.
PLATFORM_WORKER_BACKEND = env_choice("WORKER_BACKEND", "process", {"process", "docker"})
# Backends a supervisor enables besides its default, for plugins whose registry `backend`
# asks for another one (e.g. "docker"); the process backend is always enabled.
PLATFORM_WORKER_BACKENDS = env_choices("WORKER_BACKENDS", "", {"process", "docker"})
# How long the gateway waits for a supervisor to answer a call that is not an allocation.
PLATFORM_SUPERVISOR_CALL_TIMEOUT_S = env_float("SUPERVISOR_CALL_TIMEOUT_S", 5.0)
# How long an allocation waits for the gateway's connection to a supervisor that was unreachable
# a moment ago (it may have just started) before it is reported unavailable (503).
PLATFORM_SUPERVISOR_CONNECT_S = env_float("SUPERVISOR_CONNECT_S", 1.0)
# A runtime's supervisor that did not answer is skipped this long while its others are up.
PLATFORM_SUPERVISOR_DOWN_S = env_float("SUPERVISOR_DOWN_S", 5.0)
# How old a supervisor's capacity listing may get before the gateway asks again (in the background).
PLATFORM_SUPERVISOR_LIST_INTERVAL_S = env_float("SUPERVISOR_LIST_INTERVAL_S", 2.0)
# How long an allocation may take (spawn to ready) before the gateway gives up.
PLATFORM_ALLOCATION_TIMEOUT_S = env_float("ALLOCATION_TIMEOUT_S", 20.0)
# Async invocations (docs/PROGRAMS.md): how many queued invocations each gateway process runs at
# once, and how often it looks at the queue when idle.
PLATFORM_ASYNC_CONCURRENCY = env_int("ASYNC_CONCURRENCY", 8, minimum=1)
PLATFORM_ASYNC_POLL_S = env_float("ASYNC_POLL_S", 0.5, minimum=0.05)
# A worker whose invocation was cancelled is released (stopped gracefully) within this long, else
# force-stopped with CancelAllocation.
PLATFORM_CANCEL_GRACE_S = env_float("CANCEL_GRACE_S", 5.0, minimum=0.1)
# REST calls need an API key (Authorization: Bearer ...). 0: keyless calls act as tenant "default".
PLATFORM_API_REQUIRE_KEY = env_bool("API_REQUIRE_KEY", True)
# How long another gateway process may accept a key after it was revoked.
PLATFORM_API_KEY_CACHE_TTL_S = env_float("API_KEY_CACHE_TTL_S", 5.0)
# How long another gateway process may serve a registry entry after it was edited.
PLATFORM_REGISTRY_CACHE_TTL_S = env_float("REGISTRY_CACHE_TTL_S", 1.0)
# Bound on what is kept of a worker's logs and output per invocation.
PLATFORM_MAX_LOG_BYTES = env_int("MAX_LOG_BYTES", 64 * 1024, minimum=1024)
# Bound on a plugin's result (bytes of JSON).
PLATFORM_MAX_RESULT_BYTES = env_int("MAX_RESULT_BYTES", 8 * 1024 * 1024, minimum=1024)
# Deepest JSON nesting accepted in a request body (arrays and objects); deeper: 400.
PLATFORM_MAX_JSON_DEPTH = env_int("API_MAX_JSON_DEPTH", 64, minimum=1)
# The gateway's HTTP server (platform_core/gateway/http_server.py): uvicorn, granian or daphne.
PLATFORM_GATEWAY_SERVER = env_choice("GATEWAY_SERVER", "uvicorn", {"uvicorn", "granian", "daphne"})
# Benchmark only (bench/hotpath.py): invocation rows are not written, to show what the history costs.
# Breaks "every invocation recorded"; `rungateway` says so loudly when it is set.
PLATFORM_BENCH_SKIP_HISTORY = env_bool("BENCH_SKIP_HISTORY", False)
# Gateway processes on one port (uvicorn); 0: one per core with REDIS_URL, else one.
PLATFORM_GATEWAY_PROCESSES = env_int("GATEWAY_PROCESSES", 0, minimum=0)
# The largest request line + headers the gateway reads (beyond: 431, JSON).
PLATFORM_MAX_HEADER_BYTES = env_int("API_MAX_HEADER_BYTES", 65536, minimum=4096)
# Which gateway this process is, across restarts (default: the host name; `manage.py rungateway`
# sets HOST:PORT): at start it marks what its earlier life left running as interrupted.
PLATFORM_GATEWAY_INSTANCE = env_str("GATEWAY_INSTANCE_ID", "")

# --- Observability (docs/OBSERVABILITY.md) -------------------------------------------------
# text (readable) or json (one object per line, with the invocation's ids on every line about one).
LOGGING = logging_config(
    log_format=env_choice("LOG_FORMAT", "text", {"text", "json"}), level=env_str("LOG_LEVEL", "INFO")
)
# One INFO line per invocation (logger platform_core.invocations.access): plugin, status, HTTP status, ms.
PLATFORM_INVOCATION_LOG = env_bool("INVOCATION_LOG", False)
# OpenTelemetry reads its own standard variables (OTEL_EXPORTER_OTLP_ENDPOINT...); a protocol we
# cannot speak is refused here, at start, rather than at the first invocation.
for _name in ("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"):
    if os.environ.get(_name):
        env_choice(_name, "http/protobuf", {"grpc", "http/protobuf"})
# Bearer token a scraper of /metrics must send; empty: only loopback clients may scrape.
PLATFORM_METRICS_TOKEN = env_str("METRICS_TOKEN", "")

# --- Supervisors --------------------------------------------------------------------------
# Shared secret between gateways and supervisors (required for a supervisor bound beyond loopback).
PLATFORM_SUPERVISOR_SECRET = env_str("SUPERVISOR_SECRET", "")
PLATFORM_SUPERVISOR_MAX_WORKERS = env_int("SUPERVISOR_MAX_WORKERS", 32, minimum=1)
# Each worker gets a private directory here for its PPP socket; keep it short (108-byte limit).
PLATFORM_SOCKET_ROOT = env_str("SUPERVISOR_SOCKET_ROOT", "/tmp/ppp")
PLATFORM_WORKER_READY_TIMEOUT_S = env_float("WORKER_READY_TIMEOUT_S", 15.0)
PLATFORM_WORKER_STOP_GRACE_S = env_float("WORKER_STOP_GRACE_S", 2.0)
# A gateway that stops renewing its leases (it died) loses its workers after this long.
PLATFORM_LEASE_TTL_S = env_float("LEASE_TTL_S", 15.0)
# While several tenants use a supervisor, one tenant holds at most this share of its worker slots.
PLATFORM_TENANT_SLOT_SHARE = env_float("TENANT_SLOT_SHARE", 0.75)
# Which host this process is on, for worker sockets (platform_core/rpc/host_identity.py): empty
# derives it from the kernel's boot id and the socket root's directory; the same explicit value
# on a gateway and a supervisor says "this gateway sees that supervisor's worker sockets".
PLATFORM_HOST_ID = env_str("PLATFORM_HOST_ID", "")
# The host's name for people (workers list, dashboard); default: the host name.
PLATFORM_HOST_NAME = env_str("PLATFORM_HOST_NAME", "")
# Mutual TLS between gateways and supervisors (supervisor API and PPP relay): PEM text, or
# SUPERVISOR_TLS_CERT_FILE etc. naming PEM files. All three or none; required by a supervisor
# that listens beyond loopback. `manage.py makecerts` makes a development CA and certificates.
PLATFORM_SUPERVISOR_TLS = tls_from_env()
# Fork Python workers from a pre-imported template process (saves interpreter start + import grpc).
PLATFORM_PYTHON_WORKER_ZYGOTE = env_bool("PYTHON_WORKER_ZYGOTE", True)
# Stem cells (docs/PERFORMANCE.md, "Stem cells"): ephemeral workers started ahead with no plugin,
# bound to one at allocation. `runtime/backend=count` entries; per memory limit class (MiB) below.
PLATFORM_STEM_CELLS = env_str("STEM_CELLS", "java/process=1,java/docker=1,python/docker=1")
PLATFORM_STEM_CELL_MEMORY_MB = tuple(env_int_list("STEM_CELL_MEMORY_MB", "256", minimum=16))
# Process workers in a bubblewrap sandbox (own namespaces, unprivileged uid, seccomp): auto (when the
# machine allows it, else a loud warning), required (no worker without it), off. docs/SECURITY.md.
PLATFORM_WORKER_SANDBOX = env_choice("WORKER_SANDBOX", "auto", {"auto", "required", "off"})
# The uid and gid sandboxed workers run as when the supervisor is root (no account should have them).
PLATFORM_WORKER_SANDBOX_UID = env_int("WORKER_SANDBOX_UID", 65500, minimum=1)
PLATFORM_WORKER_SANDBOX_GID = env_int("WORKER_SANDBOX_GID", 65500, minimum=1)
