//! The one error that crosses the wire. Variants carry what a user may see; detail meant for
//! operators stays on the server (`#[serde(skip)]` fields are logged, never sent).

use serde::{Deserialize, Serialize};
use server_fn::codec::JsonEncoding;
use server_fn::error::{FromServerFnError, ServerFnErrorErr};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Error {
    /// The caller is not signed in (401).
    #[error("Sign in to continue.")]
    Unauthenticated,
    /// The sign-in attempt failed; the text never says whether the user exists.
    #[error("Wrong username or password.")]
    BadCredentials,
    /// Too many failed attempts (429).
    #[error("Too many failed sign-in attempts; try again in {retry_after_secs} seconds.")]
    Throttled { retry_after_secs: u64 },
    /// Signed in, but the role does not allow the action (403).
    #[error("Your role does not allow this: {message}")]
    Forbidden { message: String },
    /// The object does not exist, or belongs to a tenant the caller cannot see (404).
    #[error("No {kind} named {lookup} exists.")]
    NotFound { kind: String, lookup: String },
    /// Bad input; the message says what to change (400).
    #[error("{message}")]
    InvalidRequest { message: String },
    /// The request conflicts with the object's current state (409).
    #[error("{message}")]
    Conflict { message: String },
    /// Not enough free capacity; the message says what is free without naming other tenants.
    #[error("{message}")]
    InsufficientCapacity { message: String },
    /// A dependency (agent, database) is down; retrying later may work (503).
    #[error("The service is temporarily unavailable; try again shortly.")]
    Unavailable {
        #[serde(skip)]
        internal: String,
    },
    /// A bug or an unexpected failure (500); details are in the server log.
    #[error("Something went wrong on our side; the operators have the details.")]
    Internal {
        #[serde(skip)]
        internal: String,
    },
    /// The request never reached the server function or its reply could not be read.
    #[error("{0}")]
    Transport(String),
}

impl Error {
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidRequest { message: message.into() }
    }

    pub fn internal(internal: impl std::fmt::Display) -> Self {
        Error::Internal { internal: internal.to_string() }
    }

    pub fn unavailable(internal: impl std::fmt::Display) -> Self {
        Error::Unavailable { internal: internal.to_string() }
    }

    pub fn not_found(kind: &str, lookup: impl std::fmt::Display) -> Self {
        Error::NotFound { kind: kind.to_string(), lookup: lookup.to_string() }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Error::Forbidden { message: message.into() }
    }

    /// The HTTP status this error maps to.
    pub fn status_code(&self) -> u16 {
        match self {
            Error::Unauthenticated | Error::BadCredentials => 401,
            Error::Throttled { .. } => 429,
            Error::Forbidden { .. } => 403,
            Error::NotFound { .. } => 404,
            Error::InvalidRequest { .. } => 400,
            Error::Conflict { .. } => 409,
            Error::InsufficientCapacity { .. } => 507,
            Error::Unavailable { .. } => 503,
            Error::Internal { .. } | Error::Transport(_) => 500,
        }
    }

    /// A stable machine-readable name for the kind of error (the REST API's `code`).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Unauthenticated => "unauthenticated",
            Error::BadCredentials => "bad_credentials",
            Error::Throttled { .. } => "throttled",
            Error::Forbidden { .. } => "forbidden",
            Error::NotFound { .. } => "not_found",
            Error::InvalidRequest { .. } => "invalid_request",
            Error::Conflict { .. } => "conflict",
            Error::InsufficientCapacity { .. } => "insufficient_capacity",
            Error::Unavailable { .. } => "unavailable",
            Error::Internal { .. } | Error::Transport(_) => "internal",
        }
    }

    /// Operator-only detail, for the server log.
    pub fn internal_detail(&self) -> Option<&str> {
        match self {
            Error::Unavailable { internal } | Error::Internal { internal } => Some(internal),
            _ => None,
        }
    }
}

impl FromServerFnError for Error {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        Error::Transport(value.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_detail_never_crosses_the_wire() {
        let err = Error::internal("db password=hunter2 at 10.0.0.5");
        let json = serde_json::to_string(&err).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
        let back: Error = serde_json::from_str(&json).unwrap();
        assert_eq!(back.status_code(), 500);
        assert_eq!(back.to_string(), err.to_string());
    }

    #[test]
    fn statuses_follow_http_semantics() {
        assert_eq!(Error::Unauthenticated.status_code(), 401);
        assert_eq!(Error::forbidden("x").status_code(), 403);
        assert_eq!(Error::not_found("instance", "a").status_code(), 404);
        assert_eq!(Error::invalid("x").status_code(), 400);
    }
}
