"""Store each invocation's trace as one JSON document on the invocation (no row per event).

Existing history is moved: every invocation's ``InvocationEvent`` rows become its ``trace``
list, in sequence order, then the event table goes.
"""

from django.db import migrations, models

BATCH = 500


def events_to_documents(apps, schema_editor):
    Invocation = apps.get_model("invocations", "Invocation")
    InvocationEvent = apps.get_model("invocations", "InvocationEvent")
    fields = ("seq", "phase", "offset_ms", "source", "target", "kind", "detail")
    ids = list(InvocationEvent.objects.values_list("invocation_id", flat=True).distinct())
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        traces: dict = {invocation_id: [] for invocation_id in chunk}
        for row in InvocationEvent.objects.filter(invocation_id__in=chunk).order_by("invocation_id", "seq").values(
            "invocation_id", *fields
        ):
            traces[row.pop("invocation_id")].append(row)
        invocations = list(Invocation.objects.filter(id__in=chunk).only("id"))
        for invocation in invocations:
            invocation.trace = traces[invocation.id]
        Invocation.objects.bulk_update(invocations, ["trace"])


def documents_to_events(apps, schema_editor):
    Invocation = apps.get_model("invocations", "Invocation")
    InvocationEvent = apps.get_model("invocations", "InvocationEvent")
    for invocation in Invocation.objects.exclude(trace=[]).only("id", "trace").iterator(chunk_size=BATCH):
        InvocationEvent.objects.bulk_create(
            InvocationEvent(invocation_id=invocation.id, **event) for event in invocation.trace
        )


class Migration(migrations.Migration):
    dependencies = [
        ("invocations", "0002_invocation_gateway_instance"),
    ]

    operations = [
        migrations.AddField(
            model_name="invocation",
            name="trace",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.RunPython(events_to_documents, documents_to_events, elidable=False),
        migrations.DeleteModel(name="InvocationEvent"),
        migrations.AlterField(
            model_name="invocation",
            name="status",
            field=models.CharField(
                choices=[
                    ("running", "Running"),
                    ("succeeded", "Succeeded"),
                    ("rejected", "Rejected (bad request)"),
                    ("failed", "Failed (plugin or worker)"),
                    ("timeout", "Timed out"),
                    ("unavailable", "Unavailable (no capacity or supervisor down)"),
                    ("throttled", "Throttled (over the tenant's quota)"),
                    ("error", "Platform error"),
                    ("interrupted", "Interrupted (gateway stopped)"),
                ],
                db_index=True,
                default="running",
                max_length=20,
            ),
        ),
    ]
