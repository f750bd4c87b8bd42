//! The error every agent manager and backend returns, and the one place it becomes a gRPC status.
//!
//! Each variant says who is at fault, so the control plane knows whether to fix its request
//! (`InvalidArgument`, `FailedPrecondition`, `ResourceExhausted`, `NotFound`), retry
//! (`Unavailable`, `Injected`) or page an operator (`Internal`).

use tonic::{Code, Status, metadata::MetadataValue};

/// The gRPC metadata key set on injected faults, so tests and logs can tell them from real ones.
pub const FAULT_METADATA_KEY: &str = "x-fault";

/// A failed agent operation. The message is one sentence that says what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    /// The request is malformed or names hardware this agent does not have: the caller's fault,
    /// retrying the same request never helps.
    #[error("{0}")]
    InvalidArgument(String),
    /// The request is well-formed but conflicts with the agent's current state (stale
    /// generation, resource owned by someone else, failed device): the caller must change the
    /// request or first change the state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Not enough free capacity (hugepages, port slots): the caller placed the resource badly.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The named resource does not exist where existence is required.
    #[error("{0}")]
    NotFound(String),
    /// The device is busy or momentarily unreachable: nobody's fault, retry later.
    #[error("{0}")]
    Unavailable(String),
    /// A fault injected by the simulator's fault plan: retryable, like `Unavailable`.
    #[error("{0}")]
    Injected(String),
    /// The agent or its device misbehaved: an operator has to look.
    #[error("{0}")]
    Internal(String),
}

impl DriverError {
    /// The gRPC code this error travels as.
    pub fn code(&self) -> Code {
        match self {
            DriverError::InvalidArgument(_) => Code::InvalidArgument,
            DriverError::FailedPrecondition(_) => Code::FailedPrecondition,
            DriverError::ResourceExhausted(_) => Code::ResourceExhausted,
            DriverError::NotFound(_) => Code::NotFound,
            DriverError::Unavailable(_) | DriverError::Injected(_) => Code::Unavailable,
            DriverError::Internal(_) => Code::Internal,
        }
    }
}

impl From<DriverError> for Status {
    fn from(err: DriverError) -> Self {
        let code = err.code();
        let injected = matches!(err, DriverError::Injected(_));
        let mut status = Status::new(code, err.to_string());
        if injected {
            status
                .metadata_mut()
                .insert(FAULT_METADATA_KEY, MetadataValue::from_static("injected"));
        }
        status
    }
}

impl From<crate::fault::InjectedFault> for DriverError {
    fn from(fault: crate::fault::InjectedFault) -> Self {
        DriverError::Injected(fault.to_string())
    }
}

/// An error with its sources, "transport error: connection refused" rather than just the
/// outermost layer.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_injected_fault_is_unavailable_with_marker() {
        let status = Status::from(DriverError::Injected("injected fault: x".into()));
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(
            status.metadata().get(FAULT_METADATA_KEY).and_then(|v| v.to_str().ok()),
            Some("injected")
        );
        let real = Status::from(DriverError::Unavailable("busy".into()));
        assert!(real.metadata().get(FAULT_METADATA_KEY).is_none());
    }

    #[test]
    fn test_codes() {
        let cases = [
            (DriverError::InvalidArgument(String::new()), Code::InvalidArgument),
            (DriverError::FailedPrecondition(String::new()), Code::FailedPrecondition),
            (DriverError::ResourceExhausted(String::new()), Code::ResourceExhausted),
            (DriverError::NotFound(String::new()), Code::NotFound),
            (DriverError::Internal(String::new()), Code::Internal),
        ];
        for (err, code) in cases {
            assert_eq!(Status::from(err).code(), code);
        }
    }
}
