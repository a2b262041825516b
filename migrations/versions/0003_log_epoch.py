"""The log's epochs: a new one begins with the first write on each new Postgres timeline.

A promoted standby (or a restored backup) starts a new timeline. With asynchronous replication
it may lack the newest commits of the old primary, and it will hand their revision numbers out
again for other changes. Each epoch records where its revisions begin, so a reader that holds
revisions of an older epoch can tell whether they are still part of the log's history.

Revision ID: 0003
Revises: 0001
Create Date: 2026-12-02
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The timeline the primary writes WAL on: the first 8 hex digits of the current WAL file.
    op.execute(
        """
        CREATE FUNCTION log_timeline() RETURNS bigint
        LANGUAGE sql VOLATILE
        AS $$ SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint $$
        """
    )
    op.execute("ALTER TABLE log_head ADD COLUMN timeline bigint")
    op.execute("UPDATE log_head SET timeline = log_timeline()")
    op.execute("ALTER TABLE log_head ALTER COLUMN timeline SET NOT NULL")
    op.execute(
        """
        CREATE TABLE log_epoch (
            epoch          uuid        NOT NULL,
            timeline       bigint      NOT NULL,
            first_revision bigint      NOT NULL,
            started_at     timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_log_epoch PRIMARY KEY (epoch),
            CONSTRAINT uq_log_epoch_first_revision UNIQUE (first_revision)
        )
        """
    )
    op.execute(
        "INSERT INTO log_epoch (epoch, timeline, first_revision)"
        " SELECT epoch, timeline, 1 FROM log_head"
    )
    # In the head bump itself, under its row lock: the first writer on a new timeline starts the
    # epoch, whichever replica it is, before any revision of the new timeline is handed out.
    op.execute(
        """
        CREATE FUNCTION log_head_follow_timeline() RETURNS trigger
        LANGUAGE plpgsql
        AS $$
        DECLARE
            current_timeline bigint := log_timeline();
        BEGIN
            IF NEW.timeline <> current_timeline THEN
                NEW.timeline := current_timeline;
                NEW.epoch := gen_random_uuid();
                INSERT INTO log_epoch (epoch, timeline, first_revision)
                VALUES (NEW.epoch, current_timeline, OLD.revision + 1);
            END IF;
            RETURN NEW;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER tr_log_head_epoch BEFORE UPDATE OF revision ON log_head"
        " FOR EACH ROW EXECUTE FUNCTION log_head_follow_timeline()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER tr_log_head_epoch ON log_head")
    op.execute("DROP FUNCTION log_head_follow_timeline()")
    op.execute("DROP TABLE log_epoch")
    op.execute("ALTER TABLE log_head DROP COLUMN timeline")
    op.execute("DROP FUNCTION log_timeline()")
