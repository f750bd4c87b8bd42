//! [`FaultyBackend`]: any [`HostBackend`] with a [`FaultPlan`] consulted before each
//! operation, so tests and the simulated fleet misbehave on purpose the same way over every
//! backend.

use async_trait::async_trait;

use agent_common::{DriverError, FaultPlan};

use super::{HostBackend, HostOp};
use crate::console::ConsoleSession;
use crate::model::{HostDescription, Partition, VmSpec};

pub struct FaultyBackend<B> {
    inner: B,
    faults: FaultPlan<HostOp>,
}

impl<B: HostBackend> FaultyBackend<B> {
    pub fn new(inner: B, faults: FaultPlan<HostOp>) -> Self {
        FaultyBackend { inner, faults }
    }
}

#[async_trait]
impl<B: HostBackend> HostBackend for FaultyBackend<B> {
    async fn hardware(&self) -> Result<HostDescription, DriverError> {
        self.faults.check(HostOp::Hardware).await?;
        self.inner.hardware().await
    }

    async fn images(&self) -> Result<Option<Vec<String>>, DriverError> {
        self.faults.check(HostOp::Images).await?;
        self.inner.images().await
    }

    async fn partition_activate(&self, partition: &Partition) -> Result<(), DriverError> {
        self.faults.check(HostOp::PartitionActivate).await?;
        self.inner.partition_activate(partition).await
    }

    async fn partition_deactivate(&self, partition: &Partition) -> Result<(), DriverError> {
        self.faults.check(HostOp::PartitionDeactivate).await?;
        self.inner.partition_deactivate(partition).await
    }

    async fn domain_define(&self, spec: &VmSpec) -> Result<(), DriverError> {
        self.faults.check(HostOp::DomainDefine).await?;
        self.inner.domain_define(spec).await
    }

    async fn domain_start(&self, vm_id: &str) -> Result<(), DriverError> {
        self.faults.check(HostOp::DomainStart).await?;
        self.inner.domain_start(vm_id).await
    }

    async fn domain_stop(&self, vm_id: &str) -> Result<(), DriverError> {
        self.faults.check(HostOp::DomainStop).await?;
        self.inner.domain_stop(vm_id).await
    }

    async fn domain_reboot(&self, vm_id: &str) -> Result<(), DriverError> {
        self.faults.check(HostOp::DomainReboot).await?;
        self.inner.domain_reboot(vm_id).await
    }

    async fn domain_power_off(&self, vm_id: &str) -> Result<(), DriverError> {
        self.faults.check(HostOp::DomainPowerOff).await?;
        self.inner.domain_power_off(vm_id).await
    }

    async fn domain_undefine(&self, vm_id: &str) -> Result<(), DriverError> {
        self.faults.check(HostOp::DomainUndefine).await?;
        self.inner.domain_undefine(vm_id).await
    }

    async fn console(&self, vm_id: &str) -> Result<ConsoleSession, DriverError> {
        self.faults.check(HostOp::Console).await?;
        self.inner.console(vm_id).await
    }
}
