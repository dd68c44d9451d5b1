"""Ledger of flushed usage-count batches (usage_counts): makes a flush exactly-once across crashes."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('registrations', '0008_install_token_uses'),
    ]

    operations = [
        migrations.CreateModel(
            name='UsageFlush',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('batch', models.CharField(max_length=32, unique=True, verbose_name='batch')),
                ('day', models.DateField(verbose_name='day')),
                ('uses', models.PositiveBigIntegerField(verbose_name='uses')),
                ('flushed_at', models.DateTimeField(db_index=True, verbose_name='flushed at')),
            ],
            options={
                'verbose_name': 'usage count flush',
                'verbose_name_plural': 'usage count flushes',
                'ordering': ['-flushed_at'],
                'constraints': [models.CheckConstraint(condition=models.Q(('batch', ''), _negated=True), name='usageflush_batch_set')],
            },
        ),
    ]
