//! Per-port counters for the instance page: the instance's port is looked up in the actor's
//! tenant, then its DPU is asked (`PortCounters`) for what the port's security groups let
//! through and dropped, per direction and per rule. Telemetry: nothing is stored, each call
//! reads the DPU now, and a DPU that does not answer within [`DPU_TIMEOUT`] is an
//! `Unavailable` error rather than a page that waits.

use std::time::Duration;

use agent_proto::v1 as pb;
use portal_types::Error;
use portal_types::ids::{GenericUuid, InstanceUuid, PortUuid};
use portal_types::network::{PacketCount, PortCountersView, RuleCount, TrafficCounts};

use crate::Controller;
use crate::authz::Action;
use crate::context::OpContext;
use crate::datastore::port::PortRule;

/// How long a DPU may take to read its counters.
pub(crate) const DPU_TIMEOUT: Duration = Duration::from_secs(2);

impl Controller {
    /// The counters of the instance's ports (none before its port is made), read from their
    /// DPU now. Another tenant's instance is not found. A port whose DPU does not hold it yet
    /// is `pending` with zero counts; one on a host without a DPU is `no DPU`. Errors:
    /// `Unavailable` when the DPU is not connected, fails or does not answer in time.
    pub async fn instance_port_counters(
        &self,
        opctx: &OpContext,
        id: InstanceUuid,
    ) -> Result<Vec<PortCountersView>, Error> {
        opctx.authorize(Action::InstanceRead)?;
        let rows = self.datastore.instance_get(opctx, id).await?;
        let Some(port) = self.datastore.port_of_instance(rows.instance.id).await? else {
            return Ok(Vec::new());
        };
        let mut view = PortCountersView {
            port: PortUuid::from_untyped_uuid(port.id),
            ip: port.ip.clone(),
            dpu: port.dpu_name.clone(),
            state: "no DPU".to_owned(),
            simulated: false,
            ingress: TrafficCounts::default(),
            egress: TrafficCounts::default(),
            spoofed: PacketCount::default(),
            rules: Vec::new(),
            rule_changes: 0,
        };
        let Some(dpu) = port.dpu_name.clone() else { return Ok(vec![view]) };
        let mut client = self.agents.dpu(&dpu).ok_or_else(|| {
            Error::unavailable(format!(
                "DPU agent {dpu} is not connected, so the counters of port {} cannot be read; \
                 try again once it is back.",
                port.id
            ))
        })?;
        let request = pb::PortCountersRequest { port_id: port.id.to_string() };
        let answer = match tokio::time::timeout(DPU_TIMEOUT, client.port_counters(request)).await {
            Err(_) => {
                return Err(Error::unavailable(format!(
                    "DPU agent {dpu} did not answer for the counters of port {} within {} s; \
                     try again shortly.",
                    port.id,
                    DPU_TIMEOUT.as_secs()
                )));
            }
            Ok(Err(status)) if status.code() == tonic::Code::NotFound => {
                // Sent by the reconciler soon; until then nothing has been counted.
                view.state = "pending".to_owned();
                return Ok(vec![view]);
            }
            Ok(Err(status)) => {
                return Err(Error::unavailable(format!(
                    "DPU agent {dpu} could not read the counters of port {}: {}",
                    port.id,
                    status.message()
                )));
            }
            Ok(Ok(answer)) => answer.into_inner(),
        };
        let wiring = self.datastore.port_wiring(port).await?;
        view.state = "live".to_owned();
        view.simulated = answer.simulated;
        view.ingress = direction(answer.ingress);
        view.egress = direction(answer.egress);
        view.spoofed = count(answer.spoofed);
        view.rule_changes = answer.rule_changes;
        // The rules are named only when the DPU counts the generation the database has.
        if u64::try_from(wiring.port.generation).ok() == Some(answer.generation)
            && wiring.rules.len() == answer.rules.len()
        {
            view.rules = wiring
                .rules
                .iter()
                .zip(answer.rules)
                .map(|(rule, c)| RuleCount { rule: describe(rule), count: count(Some(c)) })
                .collect();
        }
        Ok(vec![view])
    }
}

fn count(c: Option<pb::PacketCount>) -> PacketCount {
    c.map_or_else(PacketCount::default, |c| PacketCount { packets: c.packets, bytes: c.bytes })
}

fn direction(d: Option<pb::DirectionCounters>) -> TrafficCounts {
    d.map_or_else(TrafficCounts::default, |d| TrafficCounts {
        allowed: count(d.allowed),
        dropped: count(d.dropped),
    })
}

/// `ingress tcp 22 10.0.0.0/24`, `egress any 0.0.0.0/0`.
fn describe(rule: &PortRule) -> String {
    let ports = match rule.ports {
        None => String::new(),
        Some((a, b)) if a == b => format!(" {a}"),
        Some((1, u16::MAX)) => " all ports".to_owned(),
        Some((a, b)) => format!(" {a}-{b}"),
    };
    format!("{} {}{ports} {}", rule.direction.as_str(), rule.protocol.as_str(), rule.cidr)
}
