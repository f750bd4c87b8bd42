//! Public IPs on the request path: provider pools, and tenants taking, attaching, detaching
//! and releasing addresses (every change audited). An attach or detach reaches the
//! instance's DPU through the port reconciler, woken here once the change is committed.

use portal_types::Error;
use portal_types::ids::{InstanceUuid, PublicIpPoolUuid, PublicIpUuid};
use portal_types::public_ip::{PublicIpCreate, PublicIpPoolCreate, PublicIpPoolView, PublicIpView};

use crate::Controller;
use crate::authz::Action;
use crate::context::OpContext;

impl Controller {
    /// Every pool, with how many of its addresses are held.
    pub async fn public_ip_pools(&self, opctx: &OpContext) -> Result<Vec<PublicIpPoolView>, Error> {
        opctx.authorize(Action::NetworkRead)?;
        Ok(self.datastore.public_ip_pools(opctx).await?)
    }

    pub async fn public_ip_pool_create(
        &self,
        opctx: &OpContext,
        create: &PublicIpPoolCreate,
    ) -> Result<PublicIpPoolView, Error> {
        let result = async {
            opctx.authorize(Action::IpPoolWrite)?;
            let net = create.validate()?;
            Ok(self.datastore.public_ip_pool_create(opctx, &create.name, net).await?)
        }
        .await;
        let object =
            format!("{} ({})", create.name, create.cidr.chars().take(40).collect::<String>());
        self.audited(opctx, "public_ip_pool.create", "public_ip_pool", &object, result).await
    }

    pub async fn public_ip_pool_delete(
        &self,
        opctx: &OpContext,
        id: PublicIpPoolUuid,
    ) -> Result<(), Error> {
        let result = async {
            opctx.authorize(Action::IpPoolWrite)?;
            Ok(self.datastore.public_ip_pool_delete(opctx, id).await?)
        }
        .await;
        let object = result.as_ref().map_or_else(|_| id.to_string(), Clone::clone);
        self.audited(opctx, "public_ip_pool.delete", "public_ip_pool", &object, result.map(|_| ()))
            .await
    }

    /// The tenant's public IPs.
    pub async fn public_ips(&self, opctx: &OpContext) -> Result<Vec<PublicIpView>, Error> {
        opctx.authorize(Action::NetworkRead)?;
        Ok(self.datastore.public_ips(opctx).await?)
    }

    pub async fn public_ip_get(
        &self,
        opctx: &OpContext,
        id: PublicIpUuid,
    ) -> Result<PublicIpView, Error> {
        opctx.authorize(Action::NetworkRead)?;
        Ok(self.datastore.public_ip_get(opctx, id).await?)
    }

    /// Takes an address for the tenant, within its `public_ips` quota.
    pub async fn public_ip_allocate(
        &self,
        opctx: &OpContext,
        create: &PublicIpCreate,
    ) -> Result<PublicIpView, Error> {
        let result = async {
            opctx.authorize(Action::NetworkWrite)?;
            create.validate()?;
            Ok(self.datastore.public_ip_allocate(opctx, &create.name, create.pool).await?)
        }
        .await;
        let object = match &result {
            Ok(ip) => format!("{} ({})", ip.name, ip.address),
            Err(_) => create.name.chars().take(63).collect(),
        };
        self.audited(opctx, "public_ip.allocate", "public_ip", &object, result).await
    }

    /// Maps the address to the instance's private one on its DPU.
    pub async fn public_ip_attach(
        &self,
        opctx: &OpContext,
        id: PublicIpUuid,
        instance: InstanceUuid,
    ) -> Result<PublicIpView, Error> {
        let result = async {
            opctx.authorize(Action::NetworkWrite)?;
            Ok(self.datastore.public_ip_attach(opctx, id, instance).await?)
        }
        .await;
        if result.is_ok() {
            self.network_changed.notify_one();
        }
        let object = match &result {
            Ok(ip) => format!("{} to {}", ip.address, ip.instance_name.as_deref().unwrap_or("?")),
            Err(_) => format!("{id} to {instance}"),
        };
        self.audited(opctx, "public_ip.attach", "public_ip", &object, result).await
    }

    pub async fn public_ip_detach(
        &self,
        opctx: &OpContext,
        id: PublicIpUuid,
    ) -> Result<PublicIpView, Error> {
        let result = async {
            opctx.authorize(Action::NetworkWrite)?;
            Ok(self.datastore.public_ip_detach(opctx, id).await?)
        }
        .await;
        if result.is_ok() {
            self.network_changed.notify_one();
        }
        let object = result.as_ref().map_or_else(|_| id.to_string(), |ip| ip.address.clone());
        self.audited(opctx, "public_ip.detach", "public_ip", &object, result).await
    }

    /// Gives a detached address back to its pool.
    pub async fn public_ip_release(
        &self,
        opctx: &OpContext,
        id: PublicIpUuid,
    ) -> Result<(), Error> {
        let result = async {
            opctx.authorize(Action::NetworkWrite)?;
            Ok(self.datastore.public_ip_release(opctx, id).await?)
        }
        .await;
        let object = result.as_ref().map_or_else(|_| id.to_string(), Clone::clone);
        self.audited(opctx, "public_ip.release", "public_ip", &object, result.map(|_| ())).await
    }
}
