//! A GPU VM's SuperNICs on its tenant's GPU fabric (`datastore::gpu_fabric`): the create
//! saga joins them and waits until their rail leaves hold the tenant's segment with them;
//! they leave with the VM's port. The network reconciler (`background::fabric`) does the
//! sending.

use portal_scheduler::Placement;
use portal_types::Error;
use uuid::Uuid;

use crate::Controller;
use crate::app::fleet::HostFacts;
use crate::datastore::entity::instance;
use crate::datastore::gpu_fabric::NicJoin;

/// What a join asks of the leaves: the fabric at `generation` (or later) on each of them.
pub(crate) struct FabricJoined {
    pub fabric_id: Uuid,
    pub generation: i64,
    pub leaves: Vec<String>,
}

impl Controller {
    /// Joins the VM's SuperNICs to its tenant's fabric (idempotent) and wakes the network
    /// reconciler. None for a VM without SuperNICs (CPU-only, or a host without them).
    pub(crate) async fn fabric_join(
        &self,
        row: &instance::Model,
        placement: &Placement,
    ) -> Result<Option<FabricJoined>, Error> {
        if placement.nics.is_empty() {
            return Ok(None);
        }
        let host_id = row.host_id.ok_or_else(|| Error::internal("the instance has no host"))?;
        let host = self
            .datastore
            .host_row(host_id)
            .await?
            .ok_or_else(|| Error::internal(format!("host {} is gone", placement.host)))?;
        let facts: HostFacts = serde_json::from_str(&host.inventory)
            .map_err(|e| Error::internal(format!("host {} facts: {e}", host.name)))?;
        let mut nics = Vec::with_capacity(placement.nics.len());
        for &index in &placement.nics {
            let nic = facts.nics.iter().find(|n| n.index == u32::from(index)).ok_or_else(|| {
                Error::internal(format!("host {} has no NIC {index} any more", host.name))
            })?;
            nics.push(NicJoin {
                nic_index: nic.index,
                rail: nic.rail,
                leaf: nic.leaf_switch_id.clone(),
                mac: nic.mac.clone(),
            });
        }
        let (fabric_id, generation) =
            self.datastore.fabric_join(row.id, row.tenant_id, &host.name, &nics).await?;
        self.network_changed.notify_one();
        let mut leaves: Vec<String> = nics.into_iter().map(|n| n.leaf).collect();
        leaves.sort();
        leaves.dedup();
        Ok(Some(FabricJoined { fabric_id, generation, leaves }))
    }

    /// The leaves of a join that have not confirmed it yet (none: the VM's fabric is up).
    pub(crate) async fn fabric_leaves_behind(
        &self,
        joined: &FabricJoined,
    ) -> Result<Vec<String>, Error> {
        Ok(self
            .datastore
            .fabric_leaves_behind(joined.fabric_id, joined.generation, &joined.leaves)
            .await?)
    }
}
