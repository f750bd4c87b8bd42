//! Instances' rows on the way off their host: which instances still hold host resources,
//! recording an undone launch, and finishing an instance once its host confirms the VM gone.

use portal_types::views::InstanceState;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::entity::{gpu_claim, instance};
use super::{DataStore, StoreError, begin_write, now_ms};
use crate::removal::Removal;

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
pub(crate) fn failed_pending_removal() -> Condition {
    Condition::all()
        .add(instance::Column::State.eq(InstanceState::Failed.as_str()))
        .add(instance::Column::VmRemoval.is_in([Removal::Delete.as_str(), Removal::Undo.as_str()]))
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
}
