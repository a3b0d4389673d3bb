"""The plugin registry: which plugins exist, where they run and what they accept."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

from platform_core.registry.schemas import validator_for
from platform_core.runtimes import RuntimeSpec


class WorkerMode(models.TextChoices):
    EPHEMERAL = "ephemeral", "Ephemeral (one worker per invocation)"
    POOLED = "pooled", "Pooled (warm workers reused)"


class Backend(models.TextChoices):
    DEFAULT = "", "Supervisor default"
    PROCESS = "process", "Local process"
    DOCKER = "docker", "Docker container"


def _validate_schema(value: Any) -> None:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(value)
    except SchemaError as exc:
        raise ValidationError(f"not a valid JSON Schema: {exc.message}") from exc


def _validate_argv(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(part, str) for part in value):
        raise ValidationError('must be a JSON list of strings, e.g. ["node", "worker.js", "--unix", "{socket}"]')


def _validate_env(value: object) -> None:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValidationError('must be a JSON object of strings, e.g. {"NODE_ENV": "production"}')


class Runtime(models.Model):
    """A language runtime: how a supervisor starts a worker of it (see platform_core/runtimes.py).

    Python and Java are two such entries made by a migration; `manage.py runtime add` makes more.
    """

    name = models.CharField(
        max_length=20,  # as Invocation.runtime
        unique=True,
        validators=[RegexValidator(r"^[a-z][a-z0-9_]*$", "lower-case letters, digits and _, e.g. node")],
        help_text="What plugins name and SUPERVISORS lists, e.g. node.",
    )
    description = models.TextField(blank=True)
    command = models.JSONField(
        validators=[_validate_argv],
        help_text=(
            'argv template of a worker (process backend), e.g. ["node", "{root}/w.js", "{entrypoint}", '
            '"--unix", "{socket}"]. Placeholders: {socket} (required), {entrypoint}, {concurrency}, '
            "{memory_mb}, {heap_mb}, {root}, {python}."
        ),
    )
    workdir = models.CharField(
        max_length=500,
        blank=True,
        default="{root}",
        help_text="Working directory of a worker ({root}: the platform's directory); empty: {root}.",
    )
    env = models.JSONField(
        default=dict, blank=True, validators=[_validate_env], help_text="Environment added for the worker."
    )
    image = models.CharField(max_length=200, blank=True, help_text="Default container image (docker backend).")
    container_command = models.JSONField(
        default=list,
        blank=True,
        validators=[_validate_argv],
        help_text="Arguments of a container (after the image's ENTRYPOINT); {socket} is inside the container.",
    )
    limit_address_space = models.BooleanField(
        default=True,
        help_text="Apply the memory limit as an address-space rlimit. Off for runtimes that reserve large "
        "ranges (JVM, V8): limit their heap with {heap_mb} in the command instead.",
    )
    zygote_command = models.JSONField(
        default=list,
        blank=True,
        validators=[_validate_argv],
        help_text="Command of a template process that forks workers (the Python SDK's zygote); empty: spawn.",
    )
    zygote_args = models.JSONField(
        default=list, blank=True, validators=[_validate_argv], help_text="What a worker forked from the zygote runs."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def spec(self) -> RuntimeSpec:
        """The launch recipe a supervisor gets with each allocation."""
        return RuntimeSpec.create(
            self.name,
            self.command or [],
            workdir=self.workdir,
            env=self.env or {},
            image=self.image,
            container_command=self.container_command or [],
            limit_address_space=self.limit_address_space,
            zygote_command=self.zygote_command or [],
            zygote_args=self.zygote_args or [],
        )

    def clean(self) -> None:
        try:
            problems = self.spec().errors()
        except (TypeError, AttributeError):  # not lists/dicts: the field validators say so
            return
        if problems:
            raise ValidationError("; ".join(problems))


class PluginSpec(models.Model):
    name = models.SlugField(max_length=100, unique=True, help_text="Primitive name, e.g. subtract_numbers.")
    operation = models.SlugField(
        max_length=50,
        unique=True,
        null=True,
        blank=True,
        help_text="Alias for POST /api/v1/calculate/{operation}, e.g. subtract.",
    )
    primitive = models.SlugField(
        max_length=100,
        blank=True,
        help_text="Primitive the worker hosts, when it differs from the name (a variant with other limits).",
    )
    description = models.TextField(blank=True)
    # By name (to_field), in the column that held the name before runtimes were entries.
    runtime = models.ForeignKey(
        Runtime,
        to_field="name",
        db_column="runtime",
        on_delete=models.PROTECT,
        related_name="plugins",
        help_text="The language runtime whose supervisor runs it.",
    )
    entrypoint = models.CharField(
        max_length=200,
        help_text="What the worker runs ({entrypoint} in its runtime's command): a Python module:attribute, "
        "a Java service class, a Node module path.",
    )
    image = models.CharField(max_length=200, blank=True, help_text="Container image (docker backend).")
    backend = models.CharField(max_length=20, choices=Backend.choices, blank=True, default=Backend.DEFAULT)
    input_schema = models.JSONField(default=dict, validators=[_validate_schema])
    output_schema = models.JSONField(default=dict, validators=[_validate_schema])
    mode = models.CharField(max_length=20, choices=WorkerMode.choices, default=WorkerMode.EPHEMERAL)
    min_idle = models.PositiveSmallIntegerField(default=1, help_text="Pooled: warm idle workers kept ready.")
    max_workers = models.PositiveSmallIntegerField(default=4, help_text="Pooled: most workers at once.")
    max_concurrency = models.PositiveSmallIntegerField(
        default=1, help_text="Pooled: invocations one worker serves at the same time."
    )
    idle_timeout_s = models.FloatField(default=300.0, help_text="Pooled: idle workers beyond min_idle stop after.")
    max_uses = models.PositiveIntegerField(default=1000, help_text="Pooled: recycle a worker after this many uses.")
    queue_timeout_s = models.FloatField(
        default=2.0, help_text="Pooled: how long a request waits for a busy pool before 503."
    )
    timeout_s = models.FloatField(default=30.0, help_text="Invocation timeout (Init to Completed), seconds.")
    memory_mb = models.PositiveIntegerField(default=256, help_text="Worker memory limit.")
    cpus = models.FloatField(default=1.0, help_text="Worker CPU limit (docker backend).")
    pids = models.PositiveIntegerField(default=64, help_text="Worker process/thread limit.")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "plugin"
        constraints = [
            models.CheckConstraint(condition=models.Q(timeout_s__gt=0), name="plugin_timeout_positive"),
            models.CheckConstraint(condition=models.Q(max_workers__gte=1), name="plugin_pool_max_workers_positive"),
            models.CheckConstraint(
                condition=models.Q(max_concurrency__gte=1), name="plugin_pool_max_concurrency_positive"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @cached_property
    def input_validator(self):
        """Compiled validator of ``input_schema`` (lives as long as this instance, e.g. in the registry cache)."""
        return validator_for(self.input_schema)

    @cached_property
    def output_validator(self):
        return validator_for(self.output_schema)

    @property
    def ppp_primitive(self) -> str:
        """The primitive named in PPP Invoke."""
        return self.primitive or self.name
