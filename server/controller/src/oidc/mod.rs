//! OpenID Connect single sign-on (authorization code flow with PKCE S256, state and nonce),
//! identity providers configured by provider admins, and RP-initiated logout.
//!
//! The flow: [`RelyingParty::begin`] discovers the provider (cached) and returns the
//! provider's authorization URL with the state, nonce and PKCE verifier as a
//! [`PendingSignIn`] for the web layer to keep; [`RelyingParty::finish`] takes that and the
//! provider's redirect back, checks state, exchanges the code with the verifier, verifies the
//! ID token (issuer, audience, signature, no `alg=none`, expiry, nonce, `at_hash`), maps the
//! identity to the provider's tenant and a role and creates or updates the user, whom the
//! web layer (`portal-web`) then signs in. Sessions and cookies are the web layer's. Every refusal is one sentence
//! that says what was wrong; tokens and secrets are never logged.
//!
//! Files by concern: `providers` (what admins configure), `flow` (the two redirects),
//! `verify` (the ID token), `identity` (who the user is in the portal), `secrets` (client
//! secrets encrypted at rest).

mod flow;
mod identity;
mod providers;
mod secrets;
mod verify;

use portal_types::Error;

pub use flow::{Callback, ExtraClaims, LogoutHint, PendingSignIn, RelyingParty, SignedIn};
pub use identity::role_for;
pub use providers::{
    ProviderButton, ProviderCreate, ProviderInfo, ProviderUpdate, RoleRule, parse_role_rules,
};
pub(crate) use secrets::seal_all;
pub use secrets::{SecretKeyError, SecretKeys};

fn refuse(message: impl Into<String>) -> Error {
    Error::invalid(message)
}

/// Text from the provider shown to the user: printable, short.
fn sanitize(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}
