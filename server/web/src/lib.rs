//! The portal's web layer, shared by the axum server (`portal-server`) and the server
//! functions (`portal-app` with `ssr`): what lives in the browser's session and its cookie.
//! The control plane knows nothing of sessions or cookies; it gets plain values (a user id,
//! a tenant id, an [`OpContext`](portal_controller::OpContext)) from here.
//!
//! Files by concern: `store` (the tower-sessions store over the control plane's datastore),
//! `session` (the cookie layer and what a session holds: sign-in, sign-out, tenant switch,
//! the actor behind it), `oidc` (single sign-on's state between the redirects, the refusal
//! shown on the sign-in page, the provider's logout URL).

pub mod oidc;
pub mod session;
pub mod store;

pub use session::{
    ABSOLUTE_TIMEOUT, SESSION_IDLE, actor, layer, session_end, session_list, sign_in, sign_out,
    switch_tenant,
};
pub use store::DbSessionStore;
pub use tower_sessions::Session;
