//! The `SwitchAgent` gRPC service: decode, call the [`SwitchManager`], encode; nothing else.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tonic::transport::server::Router;
use tonic::{Request, Response, Status};

use agent_common::tls::AgentCredentials;
use agent_proto::v1 as pb;
use agent_proto::v1::switch_agent_server::{SwitchAgent, SwitchAgentServer};

use crate::convert;
use crate::manager::SwitchManager;

/// Serves one switch's manager over gRPC.
#[derive(Clone)]
pub struct SwitchAgentService {
    manager: SwitchManager,
}

impl SwitchAgentService {
    pub fn new(manager: SwitchManager) -> Self {
        SwitchAgentService { manager }
    }

    /// A server for this service that accepts only mutual TLS: callers must present the
    /// control plane's certificate from the agents' CA (see `agent_common::tls`).
    pub fn into_router(
        self,
        credentials: &AgentCredentials,
    ) -> Result<Router, tonic::transport::Error> {
        Ok(credentials.server()?.add_service(SwitchAgentServer::new(self)))
    }
}

type VpcStatusStream = Pin<Box<dyn Stream<Item = Result<pb::VpcStatus, Status>> + Send>>;

#[tonic::async_trait]
impl SwitchAgent for SwitchAgentService {
    async fn get_inventory(
        &self,
        _request: Request<pb::InventoryRequest>,
    ) -> Result<Response<pb::SwitchInventory>, Status> {
        let switch = self.manager.inventory().await?;
        Ok(Response::new(convert::inventory_to_proto(
            &switch,
            crate::AGENT_VERSION,
            self.manager.boot_id(),
            &self.manager.vpcs(),
        )))
    }

    async fn ensure_vpc(
        &self,
        request: Request<pb::EnsureVpcRequest>,
    ) -> Result<Response<pb::VpcStatus>, Status> {
        let spec =
            convert::vpc_spec_from_proto(request.into_inner().spec, self.manager.description())?;
        let status = self.manager.vpc_ensure(spec).await?;
        Ok(Response::new(convert::vpc_status_to_proto(&status, self.manager.boot_id())))
    }

    async fn remove_vpc(
        &self,
        request: Request<pb::RemoveVpcRequest>,
    ) -> Result<Response<pb::VpcStatus>, Status> {
        let request = request.into_inner();
        let vpc_id = convert::vpc_id_from_proto(&request.vpc_id)?;
        let status = self.manager.vpc_remove(&vpc_id, request.generation).await?;
        Ok(Response::new(convert::vpc_status_to_proto(&status, self.manager.boot_id())))
    }

    async fn evpn_status(
        &self,
        _request: Request<pb::EvpnStatusRequest>,
    ) -> Result<Response<pb::EvpnStatusReply>, Status> {
        let status = self.manager.evpn_status().await?;
        Ok(Response::new(convert::evpn_status_to_proto(&status)))
    }

    type WatchStream = VpcStatusStream;

    async fn watch(
        &self,
        _request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let events = self.manager.watch()?;
        let boot_id = self.manager.boot_id().to_owned();
        let stream = events.map(move |status| Ok(convert::vpc_status_to_proto(&status, &boot_id)));
        Ok(Response::new(Box::pin(stream)))
    }
}
