//! The `HostAgent` gRPC service: decode the request, call the [`HostManager`], encode the
//! answer. No logic lives here; errors become statuses through `agent_common::error`.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tonic::transport::server::Router;
use tonic::{Request, Response, Status, Streaming};

use agent_common::tls::AgentCredentials;
use agent_proto::v1 as pb;
use agent_proto::v1::host_agent_server::{HostAgent, HostAgentServer};

use crate::console::INPUT_CHUNK_BYTES;
use crate::convert;
use crate::manager::HostManager;

/// Serves one host's manager over gRPC.
#[derive(Clone)]
pub struct HostAgentService {
    manager: HostManager,
}

impl HostAgentService {
    pub fn new(manager: HostManager) -> Self {
        HostAgentService { manager }
    }

    /// A server for this service that accepts only mutual TLS: callers must present the
    /// control plane's certificate from the agents' CA (see `agent_common::tls`).
    pub fn into_router(
        self,
        credentials: &AgentCredentials,
    ) -> Result<Router, tonic::transport::Error> {
        Ok(credentials.server()?.add_service(HostAgentServer::new(self)))
    }
}

type HostEventStream = Pin<Box<dyn Stream<Item = Result<pb::HostEvent, Status>> + Send>>;
/// How long a console caller has to name its VM.
const FIRST_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
type ConsoleStream = Pin<Box<dyn Stream<Item = Result<pb::ConsoleOutput, Status>> + Send>>;

#[tonic::async_trait]
impl HostAgent for HostAgentService {
    async fn get_inventory(
        &self,
        _request: Request<pb::InventoryRequest>,
    ) -> Result<Response<pb::HostInventory>, Status> {
        let inventory = self.manager.inventory().await?;
        Ok(Response::new(convert::inventory_to_proto(&inventory, crate::AGENT_VERSION)))
    }

    async fn ensure_vm(
        &self,
        request: Request<pb::EnsureVmRequest>,
    ) -> Result<Response<pb::VmStatus>, Status> {
        let spec = convert::vm_spec_from_proto(request.into_inner().spec)?;
        let status = self.manager.vm_ensure(spec).await?;
        Ok(Response::new(convert::vm_status_to_proto(&status)))
    }

    async fn remove_vm(
        &self,
        request: Request<pb::RemoveVmRequest>,
    ) -> Result<Response<pb::VmStatus>, Status> {
        let request = request.into_inner();
        let vm_id = convert::vm_id_from_proto(&request.vm_id)?;
        let status = self.manager.vm_remove(&vm_id, request.generation).await?;
        Ok(Response::new(convert::vm_status_to_proto(&status)))
    }

    async fn set_vm_power(
        &self,
        request: Request<pb::SetVmPowerRequest>,
    ) -> Result<Response<pb::VmStatus>, Status> {
        let request = request.into_inner();
        let vm_id = convert::vm_id_from_proto(&request.vm_id)?;
        let action = convert::power_action_from_proto(request.action)?;
        let status = self.manager.vm_power(&vm_id, action).await?;
        Ok(Response::new(convert::vm_status_to_proto(&status)))
    }

    async fn activate_partition(
        &self,
        request: Request<pb::ActivatePartitionRequest>,
    ) -> Result<Response<pb::PartitionStatus>, Status> {
        let request = request.into_inner();
        let vm_id = convert::vm_id_from_proto(&request.vm_id)?;
        let status = self
            .manager
            .partition_activate(&vm_id, request.partition_id, request.generation)
            .await?;
        Ok(Response::new(convert::partition_status_to_proto(&status)))
    }

    async fn deactivate_partition(
        &self,
        request: Request<pb::DeactivatePartitionRequest>,
    ) -> Result<Response<pb::PartitionStatus>, Status> {
        let request = request.into_inner();
        let vm_id = convert::vm_id_from_proto(&request.vm_id)?;
        let status = self.manager.partition_deactivate(&vm_id, request.partition_id).await?;
        Ok(Response::new(convert::partition_status_to_proto(&status)))
    }

    type WatchStream = HostEventStream;

    async fn watch(
        &self,
        _request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let events = self.manager.watch()?;
        let stream = events.map(|event| Ok(convert::host_event_to_proto(&event)));
        Ok(Response::new(Box::pin(stream)))
    }

    type ConsoleStream = ConsoleStream;

    async fn console(
        &self,
        request: Request<Streaming<pb::ConsoleRequest>>,
    ) -> Result<Response<Self::ConsoleStream>, Status> {
        let mut requests = request.into_inner();
        let named = tokio::time::timeout(FIRST_REQUEST_TIMEOUT, requests.message()).await;
        let first = named
            .map_err(|_| Status::deadline_exceeded("no ConsoleRequest named the VM in time"))??
            .ok_or_else(|| Status::invalid_argument("send a ConsoleRequest naming the VM first"))?;
        let vm_id = convert::vm_id_from_proto(&first.vm_id)?;
        let session = self.manager.console(&vm_id).await?;
        let input = session.input;
        // Keystrokes flow until the caller hangs up or the session ends; the first request
        // may carry some too.
        tokio::spawn(async move {
            let mut request = first;
            loop {
                if request.input.len() > INPUT_CHUNK_BYTES {
                    tracing::warn!(
                        vm_id,
                        bytes = request.input.len(),
                        "console input chunk too large; dropped"
                    );
                } else if !request.input.is_empty() && input.send(request.input).await.is_err() {
                    return;
                }
                match requests.message().await {
                    Ok(Some(next)) => request = next,
                    Ok(None) | Err(_) => return,
                }
            }
        });
        let output = tokio_stream::wrappers::ReceiverStream::new(session.output)
            .map(|data| Ok(pb::ConsoleOutput { data }));
        Ok(Response::new(Box::pin(output)))
    }
}
