//! The tenant fabric, for the network reconciler (`network`): every leaf holds the VPCs
//! whose VMs sit behind it, at their latest generation, and no other. A pass compares the
//! desired state (`datastore::fabric`) with what each leaf confirmed and sends the
//! difference: EnsureVpc for what is missing or old, RemoveVpc for what should go.

use std::sync::Arc;

use agent_proto::v1 as pb;
use futures::StreamExt;
use uuid::Uuid;

use crate::Controller;
use crate::datastore::fabric::FabricVpc;

/// Switch calls in flight at once.
const IN_FLIGHT: usize = 64;

enum Change {
    Ensure(String, FabricVpc),
    Remove(String, Uuid),
}

/// Sends every difference; whether to pause before the next pass (always: the pass covered
/// everything, and what failed is retried after the pause).
pub(super) async fn pass(c: &Arc<Controller>) -> bool {
    let (desired, confirmed) =
        match tokio::try_join!(c.datastore.fabric_desired(), c.datastore.fabric_confirmed()) {
            Ok(both) => both,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the tenant fabric's state");
                return true;
            }
        };
    let mut changes = Vec::new();
    for (leaf, vpcs) in &desired {
        for vpc in vpcs {
            if confirmed.get(&(leaf.clone(), vpc.vpc_id)) != Some(&vpc.generation) {
                changes.push(Change::Ensure(leaf.clone(), vpc.clone()));
            }
        }
    }
    for (leaf, vpc_id) in confirmed.keys() {
        let wanted = desired.get(leaf).is_some_and(|v| v.iter().any(|v| v.vpc_id == *vpc_id));
        if !wanted {
            changes.push(Change::Remove(leaf.clone(), *vpc_id));
        }
    }
    futures::stream::iter(changes)
        .for_each_concurrent(IN_FLIGHT, async |change| {
            let (leaf, vpc, result) = match change {
                Change::Ensure(leaf, vpc) => {
                    let result = ensure(c, &leaf, &vpc).await;
                    (leaf, vpc.vpc_id, result)
                }
                Change::Remove(leaf, vpc) => {
                    let result = remove(c, &leaf, vpc).await;
                    (leaf, vpc, result)
                }
            };
            if let Err(error) = result {
                tracing::warn!(%leaf, %vpc, %error, "tenant fabric change failed; retrying");
            }
        })
        .await;
    true
}

async fn ensure(c: &Controller, leaf: &str, vpc: &FabricVpc) -> Result<(), String> {
    let mut client = c.agents.switch(leaf).ok_or("its switch agent is not connected")?;
    let spec = pb::VpcSpec {
        vpc_id: vpc.vpc_id.to_string(),
        generation: vpc.generation.max(0) as u64,
        vrf_name: vpc.vrf_name(),
        l3_vni: vpc.vni,
        segments: vpc
            .segments
            .iter()
            .map(|s| pb::Segment {
                l2_vni: s.vni,
                cidr: s.cidr.clone(),
                attachments: s
                    .attachments
                    .iter()
                    .map(|(host, nic)| pb::Attachment { host_id: host.clone(), nic_index: *nic })
                    .collect(),
            })
            .collect(),
    };
    let answered = client
        .ensure_vpc(pb::EnsureVpcRequest { spec: Some(spec) })
        .await
        .map_err(|s| s.message().to_owned())?
        .into_inner();
    c.datastore
        .fabric_confirm(leaf, vpc.vpc_id, vpc.generation, &answered.boot_id)
        .await
        .map_err(|e| e.to_string())?;
    c.fabric_confirmed.notify_waiters();
    Ok(())
}

async fn remove(c: &Controller, leaf: &str, vpc_id: Uuid) -> Result<(), String> {
    let mut client = c.agents.switch(leaf).ok_or("its switch agent is not connected")?;
    let fence = c.datastore.fabric_fence(vpc_id).await.map_err(|e| e.to_string())?;
    client
        .remove_vpc(pb::RemoveVpcRequest { vpc_id: vpc_id.to_string(), generation: fence as u64 })
        .await
        .map_err(|s| s.message().to_owned())?;
    c.datastore.fabric_forget(leaf, vpc_id).await.map_err(|e| e.to_string())
}
