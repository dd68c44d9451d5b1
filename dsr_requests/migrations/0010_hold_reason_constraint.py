from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("dsr_requests", "0009_hold_reason")]

    operations = [
        migrations.AddConstraint(
            model_name="rightsrequest",
            constraint=models.CheckConstraint(
                condition=models.Q(state="on_hold", hold_reason__in=["identity", "clarification", "other"])
                | (~models.Q(state="on_hold") & models.Q(hold_reason="")),
                name="dsr_hold_reason_only_on_hold",
            ),
        ),
    ]
