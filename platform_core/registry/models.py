"""The plugin registry: which plugins exist, where they run and what they accept."""

from __future__ import annotations

from functools import cached_property

from django.core.exceptions import ValidationError
from django.db import models

from platform_core.registry.schemas import validator_for


class Runtime(models.TextChoices):
    PYTHON = "python", "Python"
    JAVA = "java", "Java"


class WorkerMode(models.TextChoices):
    EPHEMERAL = "ephemeral", "Ephemeral (one worker per invocation)"
    POOLED = "pooled", "Pooled (warm workers reused)"


class Backend(models.TextChoices):
    DEFAULT = "", "Supervisor default"
    PROCESS = "process", "Local process"
    DOCKER = "docker", "Docker container"


def _validate_schema(value: object) -> None:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(value)
    except SchemaError as exc:
        raise ValidationError(f"not a valid JSON Schema: {exc.message}") from exc


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
    runtime = models.CharField(max_length=20, choices=Runtime.choices)
    entrypoint = models.CharField(
        max_length=200, help_text="What the worker runs: python module:attribute, or Java service class."
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
