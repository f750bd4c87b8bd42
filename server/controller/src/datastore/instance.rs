//! Instances' rows: the tenant's list, state changes, marking a delete (with its saga row),
//! which instances still hold host resources, recording an undone launch, and finishing an
//! instance once its host confirms the VM gone.

use portal_types::Error;
use portal_types::ids::{GenericUuid, InstanceUuid};
use portal_types::views::InstanceState;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, Set,
};
use uuid::Uuid;

use super::entity::{gpu, gpu_claim, host, image, instance, saga, saga_node_event};
use super::saga::SagaStore;
use super::{DataStore, StoreError, begin_write, now_ms};
use crate::app::removal::Removal;
use crate::app::scheduling::allocation_of;
use crate::authz::Action;
use crate::context::OpContext;

/// Instances that hold host resources: not deleted, and not confirmed gone from their host.
/// (A failed VM keeps its resources until then: the host may still hold it.)
pub(crate) fn holding() -> Condition {
    Condition::all().add(instance::Column::State.ne(InstanceState::Deleted.as_str())).add(
        Condition::any()
            .add(instance::Column::VmRemoval.is_null())
            .add(instance::Column::VmRemoval.ne(Removal::Done.as_str())),
    )
}

/// Failed instances whose VM the control plane still has to remove.
fn failed_pending_removal() -> Condition {
    Condition::all()
        .add(instance::Column::State.eq(InstanceState::Failed.as_str()))
        .add(instance::Column::VmRemoval.is_in([Removal::Delete.as_str(), Removal::Undo.as_str()]))
}

/// An instance with the rows its page needs (see [`DataStore::instance_get`]).
pub struct InstanceRows {
    pub instance: instance::Model,
    pub host: Option<host::Model>,
    /// The GPUs it holds, by module id.
    pub gpus: Vec<gpu::Model>,
    pub image: Option<image::Model>,
}

impl DataStore {
    /// Marks a provisioning or running instance failed with `message` and its VM to be
    /// removed as an undo; an instance failed already only gets the removal (if none yet).
    pub(crate) async fn instance_mark_launch_failed(
        &self,
        id: Uuid,
        message: &str,
    ) -> Result<(), StoreError> {
        let live = [InstanceState::Provisioning.as_str(), InstanceState::Running.as_str()];
        let marked = instance::Entity::update_many()
            .col_expr(instance::Column::State, InstanceState::Failed.as_str().into())
            .col_expr(instance::Column::Message, message.into())
            .col_expr(instance::Column::VmRemoval, Removal::Undo.as_str().into())
            .col_expr(instance::Column::UpdatedAt, now_ms().into())
            .filter(instance::Column::Id.eq(id))
            .filter(instance::Column::State.is_in(live))
            .exec(&self.db)
            .await?;
        if marked.rows_affected == 0 {
            instance::Entity::update_many()
                .col_expr(instance::Column::VmRemoval, Removal::Undo.as_str().into())
                .filter(instance::Column::Id.eq(id))
                .filter(instance::Column::State.eq(InstanceState::Failed.as_str()))
                .filter(instance::Column::VmRemoval.is_null())
                .exec(&self.db)
                .await?;
        }
        Ok(())
    }

    /// In one transaction: moves the instance to the state `end` gives for its row (none:
    /// left as it is), marks its removal done and deletes its GPU claims. The updated row
    /// when this call finished it; a concurrent change of its state wins.
    pub(crate) async fn instance_finish_removal(
        &self,
        id: Uuid,
        end: impl FnOnce(&instance::Model) -> Option<InstanceState>,
    ) -> Result<Option<instance::Model>, StoreError> {
        let txn = begin_write(&self.db).await?;
        let Some(row) = instance::Entity::find_by_id(id).one(&txn).await? else {
            return Ok(None);
        };
        let Some(end) = end(&row) else { return Ok(None) };
        let updated_at = now_ms();
        // Compare-and-set: a concurrent delete or finish must not be overwritten.
        let res = instance::Entity::update_many()
            .col_expr(instance::Column::State, end.as_str().into())
            .col_expr(instance::Column::VmRemoval, Removal::Done.as_str().into())
            .col_expr(instance::Column::UpdatedAt, updated_at.into())
            .filter(instance::Column::Id.eq(id))
            .filter(instance::Column::State.eq(row.state.clone()))
            .exec(&txn)
            .await?;
        if res.rows_affected == 0 {
            return Ok(None);
        }
        gpu_claim::Entity::delete_many()
            .filter(gpu_claim::Column::InstanceId.eq(id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(Some(instance::Model {
            state: end.as_str().to_owned(),
            vm_removal: Some(Removal::Done.as_str().to_owned()),
            updated_at,
            ..row
        }))
    }

    /// The instances of the actor's tenant, newest first, without deleted ones.
    pub async fn instance_list(
        &self,
        opctx: &OpContext,
    ) -> Result<Vec<instance::Model>, StoreError> {
        let actor = opctx.authorize(Action::InstanceRead)?;
        Ok(instance::Entity::find()
            .filter(instance::Column::TenantId.eq(actor.tenant_id.into_untyped_uuid()))
            .filter(instance::Column::State.ne(InstanceState::Deleted.as_str()))
            .order_by_desc(instance::Column::CreatedAt)
            .all(&self.db)
            .await?)
    }

    /// An instance of the actor's tenant that is not deleted, with what its page shows
    /// beside it: the host it is placed on and that host's GPUs among `modules` (the page
    /// names their PCI addresses, which tenants cannot read from the fleet), and the image it
    /// booted from the catalog (retired ones too). Another tenant's is not found.
    pub(crate) async fn instance_get(
        &self,
        opctx: &OpContext,
        id: InstanceUuid,
    ) -> Result<InstanceRows, StoreError> {
        let actor = opctx.authorize(Action::InstanceRead)?;
        let row = instance::Entity::find_by_id(id.into_untyped_uuid())
            .filter(instance::Column::TenantId.eq(actor.tenant_id.into_untyped_uuid()))
            .filter(instance::Column::State.ne(InstanceState::Deleted.as_str()))
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::not_found("instance", id))?;
        let (mut host_row, mut gpus) = (None, Vec::new());
        if let Some(placed) = allocation_of(&row).map(|a| a.placement) {
            host_row = host::Entity::find()
                .filter(host::Column::Name.eq(&placed.host))
                .one(&self.db)
                .await?;
            if let Some(h) = &host_row {
                let modules = placed.gpus.iter().map(|&m| i32::from(m));
                gpus = gpu::Entity::find()
                    .filter(gpu::Column::HostId.eq(h.id))
                    .filter(gpu::Column::ModuleId.is_in(modules))
                    .order_by_asc(gpu::Column::ModuleId)
                    .all(&self.db)
                    .await?;
            }
        }
        let image = match &row.image {
            Some(name) => {
                image::Entity::find().filter(image::Column::Name.eq(name)).one(&self.db).await?
            }
            None => None,
        };
        Ok(InstanceRows { instance: row, host: host_row, gpus, image })
    }

    /// The sagas about an instance of the actor's tenant (oldest first) with their node
    /// events (in the order they happened). Sagas from before migration 16 are not found.
    pub(crate) async fn instance_timeline(
        &self,
        opctx: &OpContext,
        id: InstanceUuid,
    ) -> Result<Vec<(saga::Model, Vec<saga_node_event::Model>)>, StoreError> {
        let actor = opctx.authorize(Action::InstanceRead)?;
        let theirs = instance::Entity::find_by_id(id.into_untyped_uuid())
            .filter(instance::Column::TenantId.eq(actor.tenant_id.into_untyped_uuid()))
            .one(&self.db)
            .await?;
        if theirs.is_none() {
            return Err(Error::not_found("instance", id).into());
        }
        let sagas = saga::Entity::find()
            .filter(saga::Column::InstanceId.eq(id.into_untyped_uuid()))
            .order_by_asc(saga::Column::CreatedAt)
            .all(&self.db)
            .await?;
        let events = saga_node_event::Entity::find()
            .filter(saga_node_event::Column::SagaId.is_in(sagas.iter().map(|s| s.id)))
            .order_by_asc(saga_node_event::Column::At)
            .all(&self.db)
            .await?;
        Ok(sagas
            .into_iter()
            .map(|s| {
                let mine = events.iter().filter(|e| e.saga_id == s.id).cloned().collect();
                (s, mine)
            })
            .collect())
    }

    /// An instance of the actor's tenant that is not deleted, for `action` on it (deleting
    /// it, or a power change).
    pub async fn instance_fetch_for(
        &self,
        opctx: &OpContext,
        id: InstanceUuid,
        action: Action,
    ) -> Result<instance::Model, StoreError> {
        let actor = opctx.authorize(action)?;
        Ok(instance::Entity::find_by_id(id.into_untyped_uuid())
            .filter(instance::Column::TenantId.eq(actor.tenant_id.into_untyped_uuid()))
            .filter(instance::Column::State.ne(InstanceState::Deleted.as_str()))
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::not_found("instance", id))?)
    }

    /// Moves the instance to `state` if it is still in the state it was read in, and inserts
    /// the power saga's row, in one transaction; `None` if it changed meanwhile.
    pub(crate) async fn instance_mark_power(
        &self,
        row: &instance::Model,
        state: InstanceState,
        requested_at: i64,
        saga_row: saga::ActiveModel,
    ) -> Result<Option<instance::Model>, StoreError> {
        let txn = begin_write(&self.db).await?;
        let marked = instance::Entity::update_many()
            .col_expr(instance::Column::State, state.as_str().into())
            .col_expr(instance::Column::Message, Option::<String>::None.into())
            .col_expr(instance::Column::UpdatedAt, requested_at.into())
            .filter(instance::Column::Id.eq(row.id))
            .filter(instance::Column::State.eq(row.state.clone()))
            .exec(&txn)
            .await?;
        if marked.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(None);
        }
        SagaStore::insert(&txn, saga_row).await?;
        let row = instance::Entity::find_by_id(row.id).one(&txn).await?;
        txn.commit().await?;
        Ok(row)
    }

    /// Marks the instance deleting (its VM to be removed for a delete) and inserts the
    /// delete saga's row, in one transaction: once committed, the delete finishes even if
    /// this replica dies.
    pub(crate) async fn instance_mark_deleting(
        &self,
        row: &instance::Model,
        requested_at: i64,
        saga_row: saga::ActiveModel,
    ) -> Result<instance::Model, StoreError> {
        let txn = begin_write(&self.db).await?;
        let mut active: instance::ActiveModel = row.clone().into();
        active.state = Set(InstanceState::Deleting.as_str().to_owned());
        active.generation = Set(row.generation + 1);
        active.vm_removal = Set(Some(Removal::Delete.as_str().to_owned()));
        active.updated_at = Set(requested_at);
        let row = active.update(&txn).await?;
        SagaStore::insert(&txn, saga_row).await?;
        txn.commit().await?;
        Ok(row)
    }

    /// The instances placed on the host called `host_name` that its snapshot must list:
    /// defined there (running, stopped or on the way), deleting, or failed with their removal
    /// asked for.
    pub(crate) async fn instances_expected_on_host(
        &self,
        host_name: &str,
    ) -> Result<Vec<instance::Model>, StoreError> {
        let Some(host) =
            host::Entity::find().filter(host::Column::Name.eq(host_name)).one(&self.db).await?
        else {
            return Ok(Vec::new());
        };
        Ok(instance::Entity::find()
            .filter(instance::Column::HostId.eq(host.id))
            .filter(
                Condition::any()
                    .add(
                        instance::Column::State.is_in(
                            [
                                InstanceState::Running,
                                InstanceState::Stopping,
                                InstanceState::Stopped,
                                InstanceState::Starting,
                                InstanceState::Rebooting,
                                InstanceState::Deleting,
                            ]
                            .map(InstanceState::as_str),
                        ),
                    )
                    .add(failed_pending_removal()),
            )
            .all(&self.db)
            .await?)
    }

    /// Sets the state and message of the instance if its state is still `from`
    /// (compare-and-set); true when it changed.
    pub(crate) async fn instance_set_state_if(
        &self,
        id: Uuid,
        from: &str,
        state: InstanceState,
        message: Option<String>,
        updated_at: i64,
    ) -> Result<bool, StoreError> {
        let res = instance::Entity::update_many()
            .col_expr(instance::Column::State, state.as_str().into())
            .col_expr(instance::Column::Message, message.into())
            .col_expr(instance::Column::UpdatedAt, updated_at.into())
            .filter(instance::Column::Id.eq(id))
            .filter(instance::Column::State.eq(from))
            .exec(&self.db)
            .await?;
        Ok(res.rows_affected == 1)
    }
}
