//! [`OpContext`]: who is asking, within which tenant, through what, for which request. The
//! first argument of every control-plane and datastore method. It is serializable so a saga
//! carries it in its parameters instead of credentials, and rebuilds it in every action.

use portal_types::Error;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::authz::{self, Action, Actor};

/// How the caller reached the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Through {
    /// A portal session (a browser with its session cookie), or nobody signed in.
    Session,
    /// An API token (`Authorization: Bearer gpc_…`): it may not manage tokens, sessions or
    /// passwords, or it could outlive its own expiry and revocation.
    Token,
    /// A saga action, acting for whoever started the saga.
    Saga,
}

/// The caller of one control-plane operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpContext {
    actor: Option<Actor>,
    through: Through,
    /// Ties the log lines of one request (and the saga it starts) together.
    request_id: Uuid,
}

impl OpContext {
    /// A signed-in user through a portal session, or nobody (`None`).
    pub fn for_session(actor: Option<Actor>) -> Self {
        OpContext { actor, through: Through::Session, request_id: Uuid::new_v4() }
    }

    /// A user authenticated by an API token.
    pub(crate) fn for_token(actor: Actor) -> Self {
        OpContext { actor: Some(actor), through: Through::Token, request_id: Uuid::new_v4() }
    }

    /// The same caller, for the request with this id (the web layer's).
    pub fn with_request_id(self, request_id: Uuid) -> Self {
        OpContext { request_id, ..self }
    }

    /// Nobody signed in.
    pub fn anonymous() -> Self {
        Self::for_session(None)
    }

    /// The same caller and request, as a saga acting for them.
    pub fn for_saga(&self) -> Self {
        OpContext { through: Through::Saga, ..self.clone() }
    }

    pub fn actor(&self) -> Option<&Actor> {
        self.actor.as_ref()
    }

    pub fn through(&self) -> Through {
        self.through
    }

    pub fn request_id(&self) -> Uuid {
        self.request_id
    }

    /// [`authz::authorize`]: the signed-in actor if they may do `action`, else why not.
    pub fn authorize(&self, action: Action) -> Result<&Actor, Error> {
        authz::authorize(self, action)
    }
}
