//! [`FaultyBackend`]: any [`SwitchBackend`] with a [`FaultPlan`] consulted before each
//! operation.

use async_trait::async_trait;

use agent_common::{DriverError, FaultPlan};

use super::{SwitchBackend, SwitchOp};
use crate::model::{EvpnStatus, SwitchDescription, VpcSpec};

pub struct FaultyBackend<B> {
    inner: B,
    faults: FaultPlan<SwitchOp>,
}

impl<B: SwitchBackend> FaultyBackend<B> {
    pub fn new(inner: B, faults: FaultPlan<SwitchOp>) -> Self {
        FaultyBackend { inner, faults }
    }
}

#[async_trait]
impl<B: SwitchBackend> SwitchBackend for FaultyBackend<B> {
    async fn hardware(&self) -> Result<SwitchDescription, DriverError> {
        self.faults.check(SwitchOp::Hardware).await?;
        self.inner.hardware().await
    }

    async fn vrf_apply(&self, spec: &VpcSpec) -> Result<(), DriverError> {
        self.faults.check(SwitchOp::VrfApply).await?;
        self.inner.vrf_apply(spec).await
    }

    async fn vrf_remove(&self, vrf_name: &str) -> Result<(), DriverError> {
        self.faults.check(SwitchOp::VrfRemove).await?;
        self.inner.vrf_remove(vrf_name).await
    }

    async fn evpn_status(&self) -> Result<EvpnStatus, DriverError> {
        self.faults.check(SwitchOp::EvpnStatus).await?;
        self.inner.evpn_status().await
    }
}
