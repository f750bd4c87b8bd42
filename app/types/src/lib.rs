//! Types shared by the browser (WASM) and the server: typed ids, request parameters, views
//! and the one external error. Nothing here may depend on tokio, a database or gRPC.

pub mod billing;
pub mod error;
pub mod identity;
pub mod ids;
pub mod network;
pub mod page;
pub mod params;
pub mod public_ip;
pub mod role;
pub mod topology;
pub mod views;

pub use error::Error;
pub use role::Role;
