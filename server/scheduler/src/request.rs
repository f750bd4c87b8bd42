//! What a caller asks for: one or more VMs of one shape, optionally in a placement group.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::topology::size_class;

/// Most VMs one request may place (bounds the work of one decision).
pub const MAX_VMS_PER_REQUEST: u32 = 256;

/// A request to place `vm_count` VMs of one shape. A multi-VM request is all-or-nothing: either
/// every VM gets a placement or the request is rejected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementRequest {
    /// GPU model, e.g. `H100`; ignored when `gpu_count` is 0.
    pub gpu_model: String,
    /// GPUs per VM: 0 (CPU-only), 1, 2, 4 or 8. Always one Fabric Manager partition.
    pub gpu_count: u32,
    /// vCPUs per VM, each pinned to its own host CPU (plus one emulator CPU per VM).
    pub vcpus: u32,
    /// Memory per VM in GiB, backed by 1 GiB hugepages.
    pub memory_gib: u32,
    /// VMs to place (1 unless launching several at once).
    #[serde(default = "one")]
    pub vm_count: u32,
    /// Placement group the VMs belong to, if any.
    #[serde(default)]
    pub group: Option<PlacementGroup>,
    /// The image file the VMs boot: only hosts whose image store has it qualify.
    #[serde(default)]
    pub image: Option<String>,
}

fn one() -> u32 {
    1
}

/// A placement group: where the VMs go relative to each other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementGroup {
    pub policy: GroupPolicy,
    /// Hosts of the group's VMs that already run (when a group grows): a cluster stays in their
    /// scalable unit, a spread group avoids their hosts.
    #[serde(default)]
    pub member_hosts: Vec<String>,
}

/// Placement group policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupPolicy {
    /// All VMs in one scalable unit (one set of rail leaves), for multi-node training.
    Cluster,
    /// Every VM on a different host, and on different leaves / scalable units where possible.
    Spread,
}

/// The request itself is malformed; the caller is at fault.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RequestError {
    #[error("a VM gets 0, 1, 2, 4 or 8 GPUs, not {0}")]
    GpuCount(u32),
    #[error("a GPU request must name the GPU model")]
    NoModel,
    #[error("a VM needs at least one vCPU")]
    NoVcpus,
    #[error("a VM needs at least 1 GiB of memory")]
    NoMemory,
    #[error("the request is for no VMs")]
    NoVms,
    #[error("at most {MAX_VMS_PER_REQUEST} VMs can be placed in one request, not {0}")]
    TooManyVms(u32),
    #[error("placement group member host {0} is not in the fleet")]
    UnknownMember(String),
}

impl PlacementRequest {
    /// One VM with `gpus` GPUs of `model`.
    pub fn gpu(model: impl Into<String>, gpus: u32, vcpus: u32, memory_gib: u32) -> Self {
        PlacementRequest {
            gpu_model: model.into(),
            gpu_count: gpus,
            vcpus,
            memory_gib,
            vm_count: 1,
            group: None,
            image: None,
        }
    }

    /// One CPU-only VM.
    pub fn cpu_only(vcpus: u32, memory_gib: u32) -> Self {
        Self::gpu(String::new(), 0, vcpus, memory_gib)
    }

    /// The same request for `vm_count` VMs.
    pub fn vms(mut self, vm_count: u32) -> Self {
        self.vm_count = vm_count;
        self
    }

    /// The same request in a new placement group with `policy`.
    pub fn group(mut self, policy: GroupPolicy) -> Self {
        self.group = Some(PlacementGroup { policy, member_hosts: Vec::new() });
        self
    }

    /// The same request for VMs booting `image` (an image store file name).
    pub fn image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }

    /// Checks the request's own consistency (not whether it fits).
    pub fn validate(&self) -> Result<(), RequestError> {
        if self.gpu_count != 0 && size_class(self.gpu_count).is_none() {
            return Err(RequestError::GpuCount(self.gpu_count));
        }
        if self.gpu_count != 0 && self.gpu_model.is_empty() {
            return Err(RequestError::NoModel);
        }
        if self.vcpus == 0 {
            return Err(RequestError::NoVcpus);
        }
        if self.memory_gib == 0 {
            return Err(RequestError::NoMemory);
        }
        if self.vm_count == 0 {
            return Err(RequestError::NoVms);
        }
        if self.vm_count > MAX_VMS_PER_REQUEST {
            return Err(RequestError::TooManyVms(self.vm_count));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert_eq!(PlacementRequest::gpu("H100", 2, 8, 64).validate(), Ok(()));
        assert_eq!(PlacementRequest::cpu_only(2, 4).validate(), Ok(()));
        assert_eq!(
            PlacementRequest::gpu("H100", 3, 8, 64).validate(),
            Err(RequestError::GpuCount(3))
        );
        assert_eq!(PlacementRequest::gpu("", 1, 8, 64).validate(), Err(RequestError::NoModel));
        assert_eq!(PlacementRequest::cpu_only(0, 4).validate(), Err(RequestError::NoVcpus));
        assert_eq!(PlacementRequest::cpu_only(1, 4).vms(0).validate(), Err(RequestError::NoVms));
        assert_eq!(
            PlacementRequest::cpu_only(1, 4).vms(1000).validate(),
            Err(RequestError::TooManyVms(1000))
        );
        assert_eq!(RequestError::GpuCount(3).to_string(), "a VM gets 0, 1, 2, 4 or 8 GPUs, not 3");
    }

    #[test]
    fn serde_defaults() {
        let r: PlacementRequest = serde_json::from_str(
            r#"{"gpu_model":"H100","gpu_count":8,"vcpus":192,"memory_gib":1760}"#,
        )
        .expect("parses");
        assert_eq!(r.vm_count, 1);
        assert_eq!(r.group, None);
        let g: PlacementGroup = serde_json::from_str(r#"{"policy":"cluster"}"#).expect("parses");
        assert_eq!(g.policy, GroupPolicy::Cluster);
    }
}
