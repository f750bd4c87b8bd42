//! The saga log (see `server/controller/src/sagas`): one `saga` row per saga (its DAG and
//! parameters as steno serialized them, its cached state, the replica that runs it and until
//! when its lease holds) and the node events steno records before and after each action.
//! An event is recorded once: (saga, node, event type) is unique, so recording it again is a
//! no-op.
//!
//! Launches and deletes in flight from before sagas have no saga to finish them: a launch
//! still `provisioning` is marked failed (its VM, if any, goes when the user deletes it) and
//! a delete still `deleting` is marked failed with its removal pending (deleting it again
//! runs the delete saga). Both say so in a sentence.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Saga::Table)
                    .col(uuid(Saga::Id).primary_key())
                    .col(string(Saga::Name))
                    .col(text(Saga::Dag))
                    .col(string(Saga::State))
                    .col(string(Saga::Owner))
                    .col(big_integer(Saga::LeaseExpiresAt))
                    .col(big_integer(Saga::CreatedAt))
                    .col(big_integer(Saga::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("saga_unfinished")
                    .table(Saga::Table)
                    .col(Saga::State)
                    .col(Saga::LeaseExpiresAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SagaNodeEvent::Table)
                    .col(uuid(SagaNodeEvent::SagaId))
                    .col(big_integer(SagaNodeEvent::NodeId))
                    .col(string(SagaNodeEvent::EventType))
                    .col(text_null(SagaNodeEvent::Data))
                    .col(big_integer(SagaNodeEvent::At))
                    .primary_key(
                        Index::create()
                            .col(SagaNodeEvent::SagaId)
                            .col(SagaNodeEvent::NodeId)
                            .col(SagaNodeEvent::EventType),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(SagaNodeEvent::Table, SagaNodeEvent::SagaId)
                            .to(Saga::Table, Saga::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        db.execute_unprepared(
            "UPDATE instance SET state = 'failed', vm_removal = 'undo',
                 message = 'The portal was upgraded while this instance launched; delete it and launch again.'
             WHERE state = 'provisioning'",
        )
        .await?;
        db.execute_unprepared(
            "UPDATE instance SET state = 'failed', vm_removal = 'delete',
                 message = 'The portal was upgraded while this instance was being deleted; delete it again.'
             WHERE state = 'deleting'",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(SagaNodeEvent::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Saga::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum Saga {
    Table,
    Id,
    Name,
    Dag,
    State,
    Owner,
    LeaseExpiresAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum SagaNodeEvent {
    Table,
    SagaId,
    NodeId,
    EventType,
    Data,
    At,
}
