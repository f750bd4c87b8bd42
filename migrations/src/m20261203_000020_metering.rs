//! Metering and billing.
//!
//! - `instance_event`: every state an instance enters, with its time, written by a trigger in
//!   the same statement as the state change, whichever code path makes it (the log usage is
//!   reproduced from). Instances that exist already get their current state as a first event.
//! - `metering_dirty`: the instances whose log grew since metering last read it (the same
//!   trigger adds them; metering removes them with the records it makes).
//! - `price`: versioned prices per item (`type:<instance type>` per hour running,
//!   `extra:stopped-disk` per GiB-hour stopped), in millionths of the provider's currency,
//!   each effective from a time; seeded from the catalog's prices, which it replaces.
//! - `usage_record`: immutable pieces of billable time (whole seconds, never across a UTC day
//!   or a price change) with their price, keyed by instance, item and start so that metering
//!   twice inserts nothing twice.
//! - `usage_line`, `usage_day`: the records summed per month, instance, item, quantity and
//!   price (an invoice line before rounding) and per UTC day, tenant, GPU model, quantity and
//!   price (the charts), added to as records are stored, so pages read sums, not records.
//! - `instance.price_micros_per_hour`: the type's price at launch, as the user saw it.
//! - `tenant_budget`, `budget_alert`: a tenant's monthly budget, and which of its 50/80/100 %
//!   alerts were raised in which month (each once). `credit_grant`: prepaid credit.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The default price of a stopped VM's disk: 0.10 per GiB-month (730 hours), per GiB-hour.
const STOPPED_DISK_MICROS_PER_GIB_HOUR: i64 = 137;

const SQLITE_TRIGGERS: [&str; 2] = [
    "CREATE TRIGGER instance_event_insert AFTER INSERT ON instance BEGIN \
       INSERT INTO instance_event (instance_id, state, at_ms) \
       VALUES (NEW.id, NEW.state, NEW.updated_at); \
       INSERT OR IGNORE INTO metering_dirty (instance_id) VALUES (NEW.id); END",
    "CREATE TRIGGER instance_event_update AFTER UPDATE OF state ON instance \
       WHEN NEW.state IS NOT OLD.state BEGIN \
       INSERT INTO instance_event (instance_id, state, at_ms) \
       VALUES (NEW.id, NEW.state, NEW.updated_at); \
       INSERT OR IGNORE INTO metering_dirty (instance_id) VALUES (NEW.id); END",
];

const POSTGRES_TRIGGERS: [&str; 2] = [
    "CREATE FUNCTION instance_event_log() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
       IF TG_OP = 'INSERT' OR NEW.state IS DISTINCT FROM OLD.state THEN \
         INSERT INTO instance_event (instance_id, state, at_ms) \
         VALUES (NEW.id, NEW.state, NEW.updated_at); \
         INSERT INTO metering_dirty (instance_id) VALUES (NEW.id) ON CONFLICT DO NOTHING; \
       END IF; RETURN NULL; END $$",
    "CREATE TRIGGER instance_event_log AFTER INSERT OR UPDATE OF state ON instance \
       FOR EACH ROW EXECUTE FUNCTION instance_event_log()",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(InstanceEvent::Table)
                    .col(big_integer(InstanceEvent::Id).auto_increment().primary_key())
                    .col(uuid(InstanceEvent::InstanceId))
                    .col(string(InstanceEvent::State))
                    .col(big_integer(InstanceEvent::AtMs))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MeteringDirty::Table)
                    .col(pk_uuid(MeteringDirty::InstanceId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("instance_event_by_instance")
                    .table(InstanceEvent::Table)
                    .col(InstanceEvent::InstanceId)
                    .col(InstanceEvent::Id)
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        db.execute_unprepared(
            "INSERT INTO instance_event (instance_id, state, at_ms) \
             SELECT id, state, updated_at FROM instance",
        )
        .await?;
        db.execute_unprepared("INSERT INTO metering_dirty (instance_id) SELECT id FROM instance")
            .await?;
        let triggers = match db.get_database_backend() {
            DbBackend::Postgres => POSTGRES_TRIGGERS,
            _ => SQLITE_TRIGGERS,
        };
        for sql in triggers {
            db.execute_unprepared(sql).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(Price::Table)
                    .col(string(Price::Item))
                    .col(big_integer(Price::EffectiveFromMs))
                    .col(big_integer(Price::MicrosPerHour))
                    .col(uuid_null(Price::CreatedBy))
                    .col(big_integer(Price::CreatedAt))
                    .primary_key(Index::create().col(Price::Item).col(Price::EffectiveFromMs))
                    .to_owned(),
            )
            .await?;
        db.execute_unprepared(
            "INSERT INTO price (item, effective_from_ms, micros_per_hour, created_at) \
             SELECT 'type:' || name, 0, price_cents_per_hour * 10000, created_at \
             FROM instance_type",
        )
        .await?;
        db.execute_unprepared(&format!(
            "INSERT INTO price (item, effective_from_ms, micros_per_hour, created_at) \
             VALUES ('extra:stopped-disk', 0, {STOPPED_DISK_MICROS_PER_GIB_HOUR}, 0)"
        ))
        .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(InstanceType::Table)
                    .drop_column(InstanceType::PriceCentsPerHour)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Instance::Table)
                    .add_column(big_integer_null(Instance::PriceMicrosPerHour))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(UsageRecord::Table)
                    .col(uuid(UsageRecord::InstanceId))
                    .col(string(UsageRecord::Item))
                    .col(big_integer(UsageRecord::StartS))
                    .col(big_integer(UsageRecord::EndS))
                    .col(big_integer(UsageRecord::Quantity))
                    .col(uuid(UsageRecord::TenantId))
                    .col(string(UsageRecord::InstanceName))
                    .col(string(UsageRecord::GpuModel))
                    .col(integer(UsageRecord::GpuCount))
                    .col(integer_null(UsageRecord::ScalableUnit))
                    .col(uuid(UsageRecord::LaunchedBy))
                    .col(big_integer(UsageRecord::MicrosPerHour))
                    .primary_key(
                        Index::create()
                            .col(UsageRecord::InstanceId)
                            .col(UsageRecord::Item)
                            .col(UsageRecord::StartS),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(UsageLine::Table)
                    .col(big_integer(UsageLine::Month))
                    .col(uuid(UsageLine::InstanceId))
                    .col(string(UsageLine::Item))
                    .col(big_integer(UsageLine::Quantity))
                    .col(big_integer(UsageLine::MicrosPerHour))
                    .col(uuid(UsageLine::TenantId))
                    .col(string(UsageLine::InstanceName))
                    .col(string(UsageLine::GpuModel))
                    .col(integer(UsageLine::GpuCount))
                    .col(integer_null(UsageLine::ScalableUnit))
                    .col(uuid(UsageLine::LaunchedBy))
                    .col(big_integer(UsageLine::Seconds))
                    .col(big_integer(UsageLine::FirstS))
                    .col(big_integer(UsageLine::LastS))
                    .primary_key(
                        Index::create()
                            .col(UsageLine::Month)
                            .col(UsageLine::InstanceId)
                            .col(UsageLine::Item)
                            .col(UsageLine::Quantity)
                            .col(UsageLine::MicrosPerHour),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("usage_line_by_tenant")
                    .table(UsageLine::Table)
                    .col(UsageLine::TenantId)
                    .col(UsageLine::Month)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(UsageDay::Table)
                    .col(big_integer(UsageDay::Day))
                    .col(uuid(UsageDay::TenantId))
                    .col(string(UsageDay::GpuModel))
                    .col(big_integer(UsageDay::Quantity))
                    .col(big_integer(UsageDay::MicrosPerHour))
                    .col(big_integer(UsageDay::Seconds))
                    .primary_key(
                        Index::create()
                            .col(UsageDay::Day)
                            .col(UsageDay::TenantId)
                            .col(UsageDay::GpuModel)
                            .col(UsageDay::Quantity)
                            .col(UsageDay::MicrosPerHour),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("usage_day_by_tenant")
                    .table(UsageDay::Table)
                    .col(UsageDay::TenantId)
                    .col(UsageDay::Day)
                    .to_owned(),
            )
            .await?;

        let tenant_fk = |table: DynIden, column: DynIden| {
            ForeignKey::create()
                .from(table, column)
                .to(Tenant::Table, Tenant::Id)
                .on_delete(ForeignKeyAction::Cascade)
                .to_owned()
        };
        manager
            .create_table(
                Table::create()
                    .table(TenantBudget::Table)
                    .col(pk_uuid(TenantBudget::TenantId))
                    .col(big_integer(TenantBudget::MonthlyCents))
                    .foreign_key(&mut tenant_fk(
                        TenantBudget::Table.into_iden(),
                        TenantBudget::TenantId.into_iden(),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(BudgetAlert::Table)
                    .col(uuid(BudgetAlert::TenantId))
                    .col(string(BudgetAlert::Month))
                    .col(integer(BudgetAlert::Percent))
                    .col(big_integer(BudgetAlert::At))
                    .primary_key(
                        Index::create()
                            .col(BudgetAlert::TenantId)
                            .col(BudgetAlert::Month)
                            .col(BudgetAlert::Percent),
                    )
                    .foreign_key(&mut tenant_fk(
                        BudgetAlert::Table.into_iden(),
                        BudgetAlert::TenantId.into_iden(),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(CreditGrant::Table)
                    .col(pk_uuid(CreditGrant::Id))
                    .col(uuid(CreditGrant::TenantId))
                    .col(big_integer(CreditGrant::Cents))
                    .col(string(CreditGrant::Note))
                    .col(uuid_null(CreditGrant::CreatedBy))
                    .col(big_integer(CreditGrant::CreatedAt))
                    .foreign_key(&mut tenant_fk(
                        CreditGrant::Table.into_iden(),
                        CreditGrant::TenantId.into_iden(),
                    ))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let drops: &[&str] = match db.get_database_backend() {
            DbBackend::Postgres => &[
                "DROP TRIGGER instance_event_log ON instance",
                "DROP FUNCTION instance_event_log()",
            ],
            _ => &["DROP TRIGGER instance_event_insert", "DROP TRIGGER instance_event_update"],
        };
        for sql in drops {
            db.execute_unprepared(sql).await?;
        }
        for table in [
            CreditGrant::Table.into_iden(),
            BudgetAlert::Table.into_iden(),
            TenantBudget::Table.into_iden(),
            UsageDay::Table.into_iden(),
            UsageLine::Table.into_iden(),
            UsageRecord::Table.into_iden(),
            MeteringDirty::Table.into_iden(),
            InstanceEvent::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Instance::Table)
                    .drop_column(Instance::PriceMicrosPerHour)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(InstanceType::Table)
                    .add_column(big_integer(InstanceType::PriceCentsPerHour).default(0))
                    .to_owned(),
            )
            .await?;
        db.execute_unprepared(
            "UPDATE instance_type SET price_cents_per_hour = COALESCE((SELECT p.micros_per_hour \
             / 10000 FROM price p WHERE p.item = 'type:' || instance_type.name \
             ORDER BY p.effective_from_ms DESC LIMIT 1), 0)",
        )
        .await?;
        manager.drop_table(Table::drop().table(Price::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum InstanceEvent {
    Table,
    Id,
    InstanceId,
    State,
    AtMs,
}

#[derive(DeriveIden)]
enum MeteringDirty {
    Table,
    InstanceId,
}

#[derive(DeriveIden)]
enum Price {
    Table,
    Item,
    EffectiveFromMs,
    MicrosPerHour,
    CreatedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum InstanceType {
    Table,
    PriceCentsPerHour,
}

#[derive(DeriveIden)]
enum Instance {
    Table,
    PriceMicrosPerHour,
}

/// No foreign keys: usage outlives deleted instances, users and tenants.
#[derive(DeriveIden)]
enum UsageRecord {
    Table,
    InstanceId,
    Item,
    StartS,
    EndS,
    /// 1 for an instance type; GiB for a stopped disk.
    Quantity,
    TenantId,
    InstanceName,
    GpuModel,
    GpuCount,
    ScalableUnit,
    LaunchedBy,
    MicrosPerHour,
}

/// An invoice line before rounding: `Month` is its first second (UTC).
#[derive(DeriveIden)]
enum UsageLine {
    Table,
    Month,
    InstanceId,
    Item,
    Quantity,
    MicrosPerHour,
    TenantId,
    InstanceName,
    GpuModel,
    GpuCount,
    ScalableUnit,
    LaunchedBy,
    Seconds,
    FirstS,
    LastS,
}

/// `Day` is its first second (UTC).
#[derive(DeriveIden)]
enum UsageDay {
    Table,
    Day,
    TenantId,
    GpuModel,
    Quantity,
    MicrosPerHour,
    Seconds,
}

#[derive(DeriveIden)]
enum Tenant {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum TenantBudget {
    Table,
    TenantId,
    MonthlyCents,
}

#[derive(DeriveIden)]
enum BudgetAlert {
    Table,
    TenantId,
    /// `YYYY-MM`, UTC.
    Month,
    Percent,
    At,
}

#[derive(DeriveIden)]
enum CreditGrant {
    Table,
    Id,
    TenantId,
    Cents,
    Note,
    CreatedBy,
    CreatedAt,
}
