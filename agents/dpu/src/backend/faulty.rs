//! [`FaultyBackend`]: any [`DpuBackend`] with a [`FaultPlan`] consulted before each operation.

use async_trait::async_trait;

use agent_common::{DriverError, FaultPlan};

use super::{DpuBackend, DpuOp};
use crate::model::{DpuDescription, PortSpec, PortTraffic, SecurityRule};

pub struct FaultyBackend<B> {
    inner: B,
    faults: FaultPlan<DpuOp>,
}

impl<B: DpuBackend> FaultyBackend<B> {
    pub fn new(inner: B, faults: FaultPlan<DpuOp>) -> Self {
        FaultyBackend { inner, faults }
    }
}

#[async_trait]
impl<B: DpuBackend> DpuBackend for FaultyBackend<B> {
    async fn hardware(&self) -> Result<DpuDescription, DriverError> {
        self.faults.check(DpuOp::Hardware).await?;
        self.inner.hardware().await
    }

    async fn vni_attach(&self, vni: u32) -> Result<(), DriverError> {
        self.faults.check(DpuOp::VniAttach).await?;
        self.inner.vni_attach(vni).await
    }

    async fn vni_detach(&self, vni: u32) -> Result<(), DriverError> {
        self.faults.check(DpuOp::VniDetach).await?;
        self.inner.vni_detach(vni).await
    }

    async fn port_attach(&self, spec: &PortSpec) -> Result<(), DriverError> {
        self.faults.check(DpuOp::PortAttach).await?;
        self.inner.port_attach(spec).await
    }

    async fn port_detach(&self, port_id: &str) -> Result<(), DriverError> {
        self.faults.check(DpuOp::PortDetach).await?;
        self.inner.port_detach(port_id).await
    }

    async fn rules_apply(&self, port_id: &str, rules: &[SecurityRule]) -> Result<(), DriverError> {
        self.faults.check(DpuOp::RulesApply).await?;
        self.inner.rules_apply(port_id, rules).await
    }

    async fn counters(&self, port_id: &str) -> Result<PortTraffic, DriverError> {
        self.faults.check(DpuOp::Counters).await?;
        self.inner.counters(port_id).await
    }
}
