"""PostgreSQL only: an outbox insert notifies the relay, at commit (the relay's LISTEN wakes it)."""

from django.db import migrations

# FOR EACH STATEMENT: one notification per INSERT statement, however many rows; PostgreSQL folds
# identical notifications of one transaction into one and delivers them only when it commits.
CREATE = [
    """
    CREATE OR REPLACE FUNCTION messaging_outbox_notify() RETURNS trigger AS $$
    BEGIN
        PERFORM pg_notify('messaging_outbox', '');
        RETURN NULL;
    END;
    $$ LANGUAGE plpgsql
    """,
    "DROP TRIGGER IF EXISTS messaging_outbox_notify ON messaging_outboxevent",
    """
    CREATE TRIGGER messaging_outbox_notify AFTER INSERT ON messaging_outboxevent
        FOR EACH STATEMENT EXECUTE FUNCTION messaging_outbox_notify()
    """,
]
DROP = [
    "DROP TRIGGER IF EXISTS messaging_outbox_notify ON messaging_outboxevent",
    "DROP FUNCTION IF EXISTS messaging_outbox_notify()",
]


def on_postgresql(statements):
    """SQLite and MongoDB need nothing: their relay does not listen."""

    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            for statement in statements:
                schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(on_postgresql(CREATE), on_postgresql(DROP), elidable=False),
    ]
