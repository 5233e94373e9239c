"""Indexes for the review panel on a big site: messages by date (the usage page's range), and trigram indexes
for its search on PostgreSQL (those are a no-op on SQLite).

The admin searches conversations by title and message text with ``icontains``, which PostgreSQL runs as
``UPPER(col) LIKE UPPER('%word%')``: without these, every search reads every message (0.5 s a scan on 100,000
messages, and a list page scans three times: count, rows, date hierarchy). The indexes are on ``UPPER(col)``
with ``gin_trgm_ops`` so exactly that expression uses them. ``pg_trgm`` ships with PostgreSQL; where the
database user may not create extensions, the migration says so and goes on (search still works, slower).
"""
from django.db import migrations, models

INDEXES = [
    ("msg_content_trgm", "chat_message", "content"),
    ("conv_title_trgm", "chat_conversation", "title"),
]


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    from django.db import DatabaseError, transaction

    try:
        with transaction.atomic():
            schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except DatabaseError as exc:
        print(f"\n  pg_trgm could not be enabled ({exc}); the review panel's search will scan instead.")
        return
    for name, table, column in INDEXES:
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} USING gin (UPPER({column}) gin_trgm_ops)")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, _, _ in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("chat", "0005_live_usage_cancel_audit")]
    operations = [
        migrations.AddIndex(model_name="message", index=models.Index(fields=["created_at"], name="msg_created")),
        migrations.RunPython(create, drop),
    ]
