//! Tenant networking on the request path: VPCs, subnets, security groups and rules (every
//! change audited), and what a launch picks. A rule change reaches the affected ports' DPUs
//! through the port reconciler, woken here once the change is committed.

use portal_types::Error;
use portal_types::ids::{GenericUuid, SecurityGroupUuid, SecurityRuleUuid, SubnetUuid, VpcUuid};
use portal_types::network::{
    MAX_GROUPS_PER_PORT, NetworkOverview, SecurityGroupCreate, SecurityGroupView,
    SecurityRuleCreate, SecurityRuleView, SubnetCreate, SubnetView, VpcCreate, VpcView,
};
use uuid::Uuid;

use crate::Controller;
use crate::authz::Action;
use crate::context::OpContext;

/// The subnet and groups a launch resolved to, recorded on its instances.
pub(crate) struct LaunchNetwork {
    pub subnet: Option<Uuid>,
    /// A JSON array of group ids; none for the default group.
    pub security_groups: Option<String>,
}

impl Controller {
    /// The tenant's VPCs, subnets and security groups (the defaults made on first use).
    pub async fn network_overview(&self, opctx: &OpContext) -> Result<NetworkOverview, Error> {
        opctx.authorize(Action::NetworkRead)?;
        self.datastore.network_defaults(opctx).await?;
        Ok(self.datastore.network_overview(opctx).await?)
    }

    pub async fn vpc_create(
        &self,
        opctx: &OpContext,
        create: &VpcCreate,
    ) -> Result<VpcView, Error> {
        let result = async {
            opctx.authorize(Action::NetworkWrite)?;
            create.validate()?;
            Ok(self.datastore.vpc_create(opctx, &create.name).await?)
        }
        .await;
        self.audited(opctx, "vpc.create", "vpc", &create.name, result).await
    }

    pub async fn vpc_delete(&self, opctx: &OpContext, id: VpcUuid) -> Result<(), Error> {
        let result = async {
            opctx.authorize(Action::NetworkWrite)?;
            Ok(self.datastore.vpc_delete(opctx, id).await?)
        }
        .await;
        let object = result.as_ref().map_or_else(|_| id.to_string(), Clone::clone);
        self.audited(opctx, "vpc.delete", "vpc", &object, result.map(|_| ())).await
    }

    pub async fn subnet_create(
        &self,
        opctx: &OpContext,
        create: &SubnetCreate,
    ) -> Result<SubnetView, Error> {
        let result = async {
            opctx.authorize(Action::NetworkWrite)?;
            let net = create.validate()?;
            Ok(self.datastore.subnet_create(opctx, create.vpc, &create.name, net).await?)
        }
        .await;
        // The leaves that carry the VPC get the new segment.
        self.network_changed.notify_one();
        let object =
            format!("{} ({})", create.name, create.cidr.chars().take(40).collect::<String>());
        self.audited(opctx, "subnet.create", "subnet", &object, result).await
    }

    pub async fn subnet_delete(&self, opctx: &OpContext, id: SubnetUuid) -> Result<(), Error> {
        let result = async {
            opctx.authorize(Action::NetworkWrite)?;
            Ok(self.datastore.subnet_delete(opctx, id).await?)
        }
        .await;
        self.network_changed.notify_one();
        let object = result.as_ref().map_or_else(|_| id.to_string(), Clone::clone);
        self.audited(opctx, "subnet.delete", "subnet", &object, result.map(|_| ())).await
    }

    pub async fn security_group_create(
        &self,
        opctx: &OpContext,
        create: &SecurityGroupCreate,
    ) -> Result<SecurityGroupView, Error> {
        let result = async {
            opctx.authorize(Action::NetworkWrite)?;
            create.validate()?;
            self.datastore.network_defaults(opctx).await?;
            Ok(self
                .datastore
                .security_group_create(opctx, &create.name, &create.description)
                .await?)
        }
        .await;
        self.audited(opctx, "security_group.create", "security_group", &create.name, result).await
    }

    pub async fn security_group_delete(
        &self,
        opctx: &OpContext,
        id: SecurityGroupUuid,
    ) -> Result<(), Error> {
        let result = async {
            opctx.authorize(Action::NetworkWrite)?;
            Ok(self.datastore.security_group_delete(opctx, id).await?)
        }
        .await;
        let object = result.as_ref().map_or_else(|_| id.to_string(), Clone::clone);
        self.audited(opctx, "security_group.delete", "security_group", &object, result.map(|_| ()))
            .await
    }

    /// Adds an allow rule; every VM in the group gets it on its DPU at once.
    pub async fn security_rule_create(
        &self,
        opctx: &OpContext,
        create: &SecurityRuleCreate,
    ) -> Result<SecurityRuleView, Error> {
        let result = async {
            opctx.authorize(Action::NetworkWrite)?;
            let checked = create.validate()?;
            Ok(self.datastore.security_rule_create(opctx, create, &checked).await?)
        }
        .await;
        let object = match &result {
            Ok((rule, group)) => format!("{group}: {}", describe(rule)),
            Err(_) => create.group.to_string(),
        };
        self.network_changed.notify_one();
        self.audited(opctx, "security_rule.create", "security_group", &object, result.map(|r| r.0))
            .await
    }

    /// Deletes a rule; new connections it allowed are refused at once on every VM in the group.
    pub async fn security_rule_delete(
        &self,
        opctx: &OpContext,
        id: SecurityRuleUuid,
    ) -> Result<(), Error> {
        let result = async {
            opctx.authorize(Action::NetworkWrite)?;
            Ok(self.datastore.security_rule_delete(opctx, id).await?)
        }
        .await;
        let object = match &result {
            Ok(group) => format!("{group}: rule {id}"),
            Err(_) => id.to_string(),
        };
        self.network_changed.notify_one();
        self.audited(opctx, "security_rule.delete", "security_group", &object, result.map(|_| ()))
            .await
    }

    /// Checks a launch's subnet and groups: they must be the tenant's own.
    pub(crate) async fn network_for_launch(
        &self,
        opctx: &OpContext,
        subnet: Option<SubnetUuid>,
        groups: &[SecurityGroupUuid],
    ) -> Result<LaunchNetwork, Error> {
        if subnet.is_none() && groups.is_empty() {
            return Ok(LaunchNetwork { subnet: None, security_groups: None });
        }
        let mut wanted = groups.to_vec();
        wanted.sort();
        wanted.dedup();
        if wanted.len() > MAX_GROUPS_PER_PORT {
            return Err(Error::invalid(format!(
                "Pick at most {MAX_GROUPS_PER_PORT} security groups for one launch."
            )));
        }
        let overview = self.network_overview(opctx).await?;
        if let Some(id) = subnet
            && !overview.vpcs.iter().flat_map(|v| &v.subnets).any(|s| s.id == id)
        {
            return Err(Error::invalid(format!(
                "The subnet {id} is not one of your tenant's; pick one on the Networking page."
            )));
        }
        for id in &wanted {
            if !overview.security_groups.iter().any(|g| g.id == *id) {
                return Err(Error::invalid(format!(
                    "The security group {id} is not one of your tenant's; pick one on the \
                     Networking page."
                )));
            }
        }
        let ids: Vec<Uuid> = wanted.iter().map(|g| g.into_untyped_uuid()).collect();
        Ok(LaunchNetwork {
            subnet: subnet.map(|s| s.into_untyped_uuid()),
            security_groups: (!ids.is_empty())
                .then(|| serde_json::to_string(&ids))
                .transpose()
                .map_err(Error::internal)?,
        })
    }
}

/// A rule in one line, for the audit log.
fn describe(rule: &SecurityRuleView) -> String {
    let ports = rule.ports.map_or(String::new(), |(a, b)| {
        if a == b { format!(" port {a}") } else { format!(" ports {a}-{b}") }
    });
    let way = match rule.direction {
        portal_types::network::Direction::Ingress => "from",
        portal_types::network::Direction::Egress => "to",
    };
    format!(
        "allow {} {}{ports} {way} {}",
        rule.direction.as_str(),
        rule.protocol.as_str(),
        rule.remote
    )
}
