//! The instance-type catalog: what users can launch, at what price. Provider admins edit it;
//! every signed-in user reads it.

use portal_types::views::{InstanceType, LaunchChoice, LaunchOptions};
use portal_types::{Error, params};

use crate::Controller;
use crate::authz::Action;
use crate::context::OpContext;

/// The GPU model the simulated HGX H100 hosts report.
pub const H100: &str = "H100-SXM5-80GB";

/// The catalog a new installation starts with: per H100 20 vCPUs and 200 GiB (a NUMA node of
/// an HGX H100 host has 28 CPUs and 240 GiB of hugepages per GPU), which leaves each node
/// room for the two CPU-only sizes even while all its GPUs are free; and the smallest
/// CPU-only size, which a build machine or laptop serving as a real host can boot.
pub(crate) fn default_catalog() -> Vec<params::InstanceTypeCreate> {
    let gpu = |gpus: u32| params::InstanceTypeCreate {
        name: format!("h100x{gpus}"),
        gpu_model: H100.to_owned(),
        gpu_count: gpus,
        vcpus: 20 * gpus,
        memory_gib: 200 * gpus,
        disk_gib: 200 * gpus,
        price_cents_per_hour: 249 * u64::from(gpus),
    };
    let cpu = |vcpus: u32, price: u64| params::InstanceTypeCreate {
        name: format!("c{vcpus}m{}", vcpus * 4),
        gpu_model: String::new(),
        gpu_count: 0,
        vcpus,
        memory_gib: vcpus * 4,
        disk_gib: 100,
        price_cents_per_hour: price,
    };
    let small = params::InstanceTypeCreate {
        name: "c1m1".to_owned(),
        memory_gib: 1,
        disk_gib: 10,
        ..cpu(1, 3)
    };
    vec![gpu(1), gpu(2), gpu(4), gpu(8), small, cpu(8, 24), cpu(16, 48)]
}

impl Controller {
    /// Everything the launch form offers the caller, as values and labels: the catalog's
    /// types and current images, the caller's SSH keys, the tenant's subnets and security
    /// groups, with the defaults preselected.
    pub async fn launch_options(&self, opctx: &OpContext) -> Result<LaunchOptions, Error> {
        opctx.authorize(Action::CatalogRead)?;
        let (types, images, keys, network) = tokio::try_join!(
            self.instance_type_list(opctx),
            self.image_list(opctx, false),
            self.ssh_key_list(opctx),
            self.network_overview(opctx),
        )?;
        let choice = |value: String, label: String, preselected: bool| LaunchChoice {
            value,
            label,
            preselected,
        };
        Ok(LaunchOptions {
            instance_types: types
                .iter()
                .map(|t| choice(t.name.clone(), format!("{} — {}", t.name, t.summary()), false))
                .collect(),
            images: images
                .iter()
                .map(|i| choice(i.name.clone(), format!("{} — {}", i.name, i.summary()), false))
                .collect(),
            ssh_keys: keys
                .into_iter()
                .enumerate()
                .map(|(n, k)| choice(k.id.to_string(), k.name, n == 0))
                .collect(),
            subnets: network
                .vpcs
                .iter()
                .flat_map(|v| {
                    v.subnets.iter().map(move |s| {
                        let label = format!("{} / {} ({})", v.name, s.name, s.cidr);
                        choice(s.id.to_string(), label, false)
                    })
                })
                .collect(),
            security_groups: network
                .security_groups
                .into_iter()
                .map(|g| choice(g.id.to_string(), g.name, g.is_default))
                .collect(),
        })
    }

    pub async fn instance_type_list(&self, opctx: &OpContext) -> Result<Vec<InstanceType>, Error> {
        opctx.authorize(Action::CatalogRead)?;
        let mut types = self.datastore.instance_type_list(opctx).await?;
        // GPU types first, smallest first; CPU-only types after them.
        types.sort_by_key(|t| (t.gpu_count == 0, t.gpu_count, t.vcpus, t.name.clone()));
        Ok(types)
    }

    pub async fn instance_type_create(
        &self,
        opctx: &OpContext,
        create: &params::InstanceTypeCreate,
    ) -> Result<InstanceType, Error> {
        let result = self.instance_type_create_unaudited(opctx, create).await;
        self.audited(opctx, "instance_type.create", "instance_type", &create.name, result).await
    }

    async fn instance_type_create_unaudited(
        &self,
        opctx: &OpContext,
        create: &params::InstanceTypeCreate,
    ) -> Result<InstanceType, Error> {
        opctx.authorize(Action::CatalogWrite)?;
        create.validate()?;
        Ok(self.datastore.instance_type_create(opctx, create).await?)
    }

    /// Removes a type from the catalog; instances already running keep their shape.
    pub async fn instance_type_delete(&self, opctx: &OpContext, name: &str) -> Result<(), Error> {
        let result = self.instance_type_delete_unaudited(opctx, name).await;
        self.audited(opctx, "instance_type.delete", "instance_type", name, result).await
    }

    async fn instance_type_delete_unaudited(
        &self,
        opctx: &OpContext,
        name: &str,
    ) -> Result<(), Error> {
        opctx.authorize(Action::CatalogWrite)?;
        Ok(self.datastore.instance_type_delete(opctx, name).await?)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_catalog_is_valid_and_fits_an_hgx_h100_numa_node() {
        for t in super::default_catalog() {
            t.validate().unwrap();
            // 112 CPUs and 960 hugepages per NUMA node, 4 GPUs per node.
            if let (Some(cpus), Some(gib)) =
                (t.vcpus.checked_div(t.gpu_count), t.memory_gib.checked_div(t.gpu_count))
            {
                assert!(cpus < 28, "{}", t.name);
                assert!(gib <= 240, "{}", t.name);
            }
        }
    }
}
