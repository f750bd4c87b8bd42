//! Public IPs are billed per hour while attached to an instance, on that instance's invoice.
//!
//! - `public_ip.attachment_changed_at`: when its instance last changed (attached or
//!   detached), set by the statement that changes it, as `instance.updated_at` is for states.
//! - `public_ip_event`: every attachment and detachment per instance, with its time, written
//!   by a trigger in the same statement, which also adds the instance to `metering_dirty`.
//!   Addresses attached already are logged as attached from this migration on (nothing was
//!   billed for them before).
//! - The price item `extra:public-ip`, per hour attached: 0.005 to start with.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The default price of a public IPv4 address, per hour attached.
const PUBLIC_IP_MICROS_PER_HOUR: i64 = 5_000;

const SQLITE_TRIGGERS: [&str; 1] =
    ["CREATE TRIGGER public_ip_event_update AFTER UPDATE OF instance_id ON public_ip \
       WHEN NEW.instance_id IS NOT OLD.instance_id BEGIN \
       INSERT INTO public_ip_event (instance_id, attached, at_ms) \
         SELECT OLD.instance_id, FALSE, NEW.attachment_changed_at \
         WHERE OLD.instance_id IS NOT NULL; \
       INSERT OR IGNORE INTO metering_dirty (instance_id) \
         SELECT OLD.instance_id WHERE OLD.instance_id IS NOT NULL; \
       INSERT INTO public_ip_event (instance_id, attached, at_ms) \
         SELECT NEW.instance_id, TRUE, NEW.attachment_changed_at \
         WHERE NEW.instance_id IS NOT NULL; \
       INSERT OR IGNORE INTO metering_dirty (instance_id) \
         SELECT NEW.instance_id WHERE NEW.instance_id IS NOT NULL; END"];

const POSTGRES_TRIGGERS: [&str; 2] = [
    "CREATE FUNCTION public_ip_event_log() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
       IF NEW.instance_id IS DISTINCT FROM OLD.instance_id THEN \
         IF OLD.instance_id IS NOT NULL THEN \
           INSERT INTO public_ip_event (instance_id, attached, at_ms) \
           VALUES (OLD.instance_id, FALSE, NEW.attachment_changed_at); \
           INSERT INTO metering_dirty (instance_id) VALUES (OLD.instance_id) \
           ON CONFLICT DO NOTHING; \
         END IF; \
         IF NEW.instance_id IS NOT NULL THEN \
           INSERT INTO public_ip_event (instance_id, attached, at_ms) \
           VALUES (NEW.instance_id, TRUE, NEW.attachment_changed_at); \
           INSERT INTO metering_dirty (instance_id) VALUES (NEW.instance_id) \
           ON CONFLICT DO NOTHING; \
         END IF; \
       END IF; RETURN NULL; END $$",
    "CREATE TRIGGER public_ip_event_log AFTER UPDATE OF instance_id ON public_ip \
       FOR EACH ROW EXECUTE FUNCTION public_ip_event_log()",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(PublicIp::Table)
                    .add_column(big_integer(PublicIp::AttachmentChangedAt).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PublicIpEvent::Table)
                    .col(big_integer(PublicIpEvent::Id).auto_increment().primary_key())
                    .col(uuid(PublicIpEvent::InstanceId))
                    .col(boolean(PublicIpEvent::Attached))
                    .col(big_integer(PublicIpEvent::AtMs))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("public_ip_event_by_instance")
                    .table(PublicIpEvent::Table)
                    .col(PublicIpEvent::InstanceId)
                    .col(PublicIpEvent::Id)
                    .to_owned(),
            )
            .await?;

        let db = manager.get_connection();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        db.execute_unprepared(&format!(
            "UPDATE public_ip SET attachment_changed_at = {now_ms} WHERE instance_id IS NOT NULL"
        ))
        .await?;
        db.execute_unprepared(&format!(
            "INSERT INTO public_ip_event (instance_id, attached, at_ms) \
             SELECT instance_id, TRUE, {now_ms} FROM public_ip WHERE instance_id IS NOT NULL"
        ))
        .await?;
        db.execute_unprepared(
            "INSERT INTO metering_dirty (instance_id) SELECT instance_id FROM public_ip \
             WHERE instance_id IS NOT NULL AND instance_id NOT IN \
               (SELECT instance_id FROM metering_dirty)",
        )
        .await?;
        let triggers: &[&str] = match db.get_database_backend() {
            DbBackend::Postgres => &POSTGRES_TRIGGERS,
            _ => &SQLITE_TRIGGERS,
        };
        for sql in triggers {
            db.execute_unprepared(sql).await?;
        }
        db.execute_unprepared(&format!(
            "INSERT INTO price (item, effective_from_ms, micros_per_hour, created_at) \
             VALUES ('extra:public-ip', 0, {PUBLIC_IP_MICROS_PER_HOUR}, {now_ms})"
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let drops: &[&str] = match db.get_database_backend() {
            DbBackend::Postgres => &[
                "DROP TRIGGER public_ip_event_log ON public_ip",
                "DROP FUNCTION public_ip_event_log()",
            ],
            _ => &["DROP TRIGGER public_ip_event_update"],
        };
        for sql in drops {
            db.execute_unprepared(sql).await?;
        }
        db.execute_unprepared("DELETE FROM price WHERE item = 'extra:public-ip'").await?;
        manager.drop_table(Table::drop().table(PublicIpEvent::Table).to_owned()).await?;
        manager
            .alter_table(
                Table::alter()
                    .table(PublicIp::Table)
                    .drop_column(PublicIp::AttachmentChangedAt)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum PublicIp {
    Table,
    AttachmentChangedAt,
}

#[derive(DeriveIden)]
enum PublicIpEvent {
    Table,
    Id,
    InstanceId,
    Attached,
    AtMs,
}
