"""A hold records why it was started: only identity verification and clarification stop the legal clock.

Requests already on hold were all put there to ask the requester something (the only kind of hold there
was), so they are recorded as clarification.
"""

from django.db import migrations, models


def existing_holds_are_clarifications(apps, schema_editor):
    RightsRequest = apps.get_model("dsr_requests", "RightsRequest")
    RightsRequest.objects.filter(state="on_hold").update(hold_reason="clarification")


class Migration(migrations.Migration):
    dependencies = [("dsr_requests", "0008_channels_and_agents")]

    operations = [
        migrations.AddField(
            model_name="rightsrequest",
            name="hold_reason",
            field=models.CharField(
                blank=True,
                choices=[
                    ("identity", "Verifying the requester's identity"),
                    ("clarification", "Clarifying what the request covers"),
                    ("other", "Another reason (pauses only our 30-working-day date)"),
                ],
                default="",
                max_length=20,
                verbose_name="reason for the hold",
            ),
        ),
        migrations.AlterField(
            model_name="rightsrequest",
            name="hold_calendar_days",
            field=models.PositiveIntegerField(
                default=0,
                help_text="Holds to verify identity or clarify the request; they do not count under CCPA.",
                verbose_name="calendar days the legal clock stood still",
            ),
        ),
        migrations.RunPython(existing_holds_are_clarifications, migrations.RunPython.noop),
    ]
