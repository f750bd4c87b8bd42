//! The `DpuAgent` gRPC service: decode, call the [`DpuManager`], encode; nothing else.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tonic::transport::server::Router;
use tonic::{Request, Response, Status};

use agent_common::tls::AgentCredentials;
use agent_proto::v1 as pb;
use agent_proto::v1::dpu_agent_server::{DpuAgent, DpuAgentServer};

use crate::convert;
use crate::manager::DpuManager;

/// Serves one DPU's manager over gRPC.
#[derive(Clone)]
pub struct DpuAgentService {
    manager: DpuManager,
}

impl DpuAgentService {
    pub fn new(manager: DpuManager) -> Self {
        DpuAgentService { manager }
    }

    /// A server for this service that accepts only mutual TLS: callers must present the
    /// control plane's certificate from the agents' CA (see `agent_common::tls`).
    pub fn into_router(
        self,
        credentials: &AgentCredentials,
    ) -> Result<Router, tonic::transport::Error> {
        Ok(credentials.server()?.add_service(DpuAgentServer::new(self)))
    }
}

type PortStatusStream = Pin<Box<dyn Stream<Item = Result<pb::PortStatus, Status>> + Send>>;

#[tonic::async_trait]
impl DpuAgent for DpuAgentService {
    async fn get_inventory(
        &self,
        _request: Request<pb::InventoryRequest>,
    ) -> Result<Response<pb::DpuInventory>, Status> {
        let dpu = self.manager.inventory().await?;
        Ok(Response::new(convert::inventory_to_proto(
            &dpu,
            crate::AGENT_VERSION,
            self.manager.boot_id(),
            self.manager.held_ports(),
        )))
    }

    async fn ensure_port(
        &self,
        request: Request<pb::EnsurePortRequest>,
    ) -> Result<Response<pb::PortStatus>, Status> {
        let spec = convert::port_spec_from_proto(request.into_inner().spec)?;
        let status = self.manager.port_ensure(spec).await?;
        Ok(Response::new(convert::port_status_to_proto(&status, self.manager.boot_id())))
    }

    async fn remove_port(
        &self,
        request: Request<pb::RemovePortRequest>,
    ) -> Result<Response<pb::PortStatus>, Status> {
        let request = request.into_inner();
        let port_id = convert::port_id_from_proto(&request.port_id)?;
        let status = self.manager.port_remove(&port_id, request.generation).await?;
        Ok(Response::new(convert::port_status_to_proto(&status, self.manager.boot_id())))
    }

    async fn port_counters(
        &self,
        request: Request<pb::PortCountersRequest>,
    ) -> Result<Response<pb::PortCounters>, Status> {
        let port_id = convert::port_id_from_proto(&request.into_inner().port_id)?;
        let report = self.manager.port_counters(&port_id).await?;
        Ok(Response::new(convert::port_counters_to_proto(&report)))
    }

    type WatchStream = PortStatusStream;

    async fn watch(
        &self,
        _request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let events = self.manager.watch()?;
        let boot_id = self.manager.boot_id().to_owned();
        let stream = events.map(move |status| Ok(convert::port_status_to_proto(&status, &boot_id)));
        Ok(Response::new(Box::pin(stream)))
    }
}
