//! The datastore: every database call of the control plane, and the only module (with
//! `migrations/`) that may name sea-orm; `.ci/check-layers` enforces it.
//!
//! One file per resource (`<resource>.rs`) adds `impl DataStore` methods named
//! `<resource>_<verb>`. A method that a request reaches takes the caller's [`OpContext`]
//! first and authorizes on its first line; tenant scoping comes from the authorized actor,
//! never from a caller-supplied id alone. Errors are [`StoreError`]: a query failure keeps
//! its whole cause chain for the log, a public error passes through unchanged.
//!
//! [`OpContext`]: crate::context::OpContext

pub mod account;
pub mod api_token;
pub mod audit;
pub mod backup;
pub(crate) mod claim;
mod connection;
pub(crate) mod console;
pub mod entity;
pub(crate) mod fabric;
pub mod fleet;
pub(crate) mod gpu_fabric;
mod identity;
mod identity_provider;
pub(crate) mod image;
pub(crate) mod instance;
pub mod instance_type;
mod login_failure;
pub mod network;
pub(crate) mod notify;
mod placement;
pub mod port;
pub(crate) mod price;
pub(crate) mod public_ip;
pub mod quota;
pub(crate) mod saga;
mod session;
pub mod ssh_key;
mod tenant;
pub mod topology;
pub(crate) mod usage;
mod user;

pub use connection::{begin_port_write, begin_write, connect, now_ms, rfc3339, with_startup_lock};
pub use identity_provider::{IdentityProviderChange, NewIdentityProvider};
pub use session::{SessionRow, session_label};

use sea_orm::DatabaseConnection;

/// The control plane's handle on the database.
#[derive(Clone)]
pub struct DataStore {
    db: DatabaseConnection,
}

impl DataStore {
    pub fn new(db: DatabaseConnection) -> Self {
        DataStore { db }
    }

    /// The connection, for tests that inspect rows and for code being moved into this layer.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }
}

/// A role column as a role; one this version does not know grants the least.
pub(crate) fn stored_role(column: &str) -> crate::authz::Role {
    if column == api_token::PROVIDER_ADMIN {
        return crate::authz::Role::TenantAdmin;
    }
    crate::authz::Role::parse(column).unwrap_or(crate::authz::Role::Viewer)
}

/// Why a datastore method failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed (nobody's fault the caller can fix; operators see the cause).
    #[error("database error: {0}")]
    Query(#[from] sea_orm::DbErr),
    /// Refused, not found, invalid, conflicting: the sentence the caller sees.
    #[error(transparent)]
    Public(#[from] portal_types::Error),
}

impl StoreError {
    /// What went wrong with every cause, without the "database error" label (for messages
    /// that already say it was the database).
    pub fn detail(&self) -> String {
        match self {
            StoreError::Query(e) => cause_chain(e),
            StoreError::Public(e) => e.to_string(),
        }
    }
}

impl From<StoreError> for portal_types::Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Query(e) => portal_types::Error::internal(cause_chain(&e)),
            StoreError::Public(e) => e,
        }
    }
}

/// `e` and every error that caused it, outermost first, for operators.
fn cause_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_failure_keeps_its_causes_and_a_public_error_passes_through() {
        let io = std::io::Error::other("disk on fire");
        let db = sea_orm::DbErr::Conn(sea_orm::RuntimeErr::Internal(format!("pool: {io}")));
        let public: portal_types::Error = StoreError::Query(db).into();
        assert!(public.internal_detail().is_some_and(|d| d.contains("disk on fire")), "{public:?}");
        let refused = portal_types::Error::forbidden("no");
        assert_eq!(portal_types::Error::from(StoreError::Public(refused.clone())), refused);
    }
}
