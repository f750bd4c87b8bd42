//! Single sign-on's state in the visitor's session: the sign-in pending between the two
//! redirects (state, nonce, PKCE verifier; one use only), what RP-initiated logout needs
//! after a single sign-on, and why the last sign-on was refused, kept under a random
//! reference for the sign-in page. The protocol is the control plane's
//! [`RelyingParty`]; this file only keeps its values in the session.

use portal_controller::Controller;
use portal_controller::oidc::{Callback, LogoutHint, PendingSignIn, RelyingParty};
use portal_types::Error;
use portal_types::ids::UserUuid;
use tower_sessions::Session;

/// Session key of a sign-in in progress (state, nonce, PKCE verifier).
const PENDING_KEY: &str = "oidc_pending";
/// Session key of what RP-initiated logout needs after a single sign-on.
const LOGOUT_KEY: &str = "oidc_logout";
/// Session key of why the last single sign-on was refused, shown once on the sign-in page.
const REFUSAL_KEY: &str = "oidc_refusal";

/// Starts a sign-in with the provider `name`: remembers state, nonce and the PKCE verifier
/// in the session and returns the provider's authorization URL.
pub async fn begin(
    rp: &RelyingParty,
    ctl: &Controller,
    session: &Session,
    name: &str,
) -> Result<String, Error> {
    let (url, pending) = rp.begin(ctl, name).await?;
    session.insert(PENDING_KEY, pending).await.map_err(Error::internal)?;
    Ok(url)
}

/// Finishes a sign-in from the provider's redirect: on success the session is signed in
/// (with a fresh id) as the mapped user, and keeps what RP-initiated logout needs.
pub async fn finish(
    rp: &RelyingParty,
    ctl: &Controller,
    session: &Session,
    callback: &Callback,
) -> Result<UserUuid, Error> {
    // One use only: a replayed callback finds nothing.
    let pending: Option<PendingSignIn> =
        session.remove(PENDING_KEY).await.map_err(Error::internal)?;
    let signed_in = rp.finish(ctl, pending, callback).await?;
    crate::session::sign_in(session, signed_in.user_id).await?;
    // A hint left by an earlier sign-in in this browser belongs to another identity.
    session.remove::<LogoutHint>(LOGOUT_KEY).await.map_err(Error::internal)?;
    if let Some(hint) = signed_in.logout {
        session.insert(LOGOUT_KEY, hint).await.map_err(Error::internal)?;
    }
    Ok(signed_in.user_id)
}

/// Where to send the browser after signing out a session that signed in through a
/// provider offering RP-initiated logout; `None` otherwise. Call before ending the session.
pub async fn logout_url(session: &Session) -> Result<Option<String>, Error> {
    let hint: Option<LogoutHint> = session.get(LOGOUT_KEY).await.map_err(Error::internal)?;
    Ok(hint.and_then(|h| h.url()))
}

/// Keeps why a single sign-on was refused for the sign-in page, under a random reference
/// for its URL. (The sentence does not travel in the URL, where a crafted link could put
/// any words on the page; a reference another browser made finds nothing here.)
pub async fn remember_refusal(session: &Session, sentence: &str) -> Result<String, Error> {
    let reference = format!("{:016x}", rand::random::<u64>());
    let kept = (reference.clone(), sentence.to_owned());
    session.insert(REFUSAL_KEY, kept).await.map_err(Error::internal)?;
    Ok(reference)
}

/// The refusal this browser's session keeps under `reference`, if any.
pub async fn refusal(session: &Session, reference: &str) -> Result<Option<String>, Error> {
    let kept: Option<(String, String)> = session.get(REFUSAL_KEY).await.map_err(Error::internal)?;
    Ok(kept.filter(|(r, _)| r == reference).map(|(_, sentence)| sentence))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::session::tests::Memory;

    #[tokio::test]
    async fn a_refusal_is_found_only_by_its_reference() {
        let session = Session::new(None, Arc::new(Memory::default()), None);
        let reference = remember_refusal(&session, "The state does not match.").await.unwrap();
        assert_eq!(
            refusal(&session, &reference).await.unwrap().as_deref(),
            Some("The state does not match.")
        );
        assert_eq!(refusal(&session, "0123456789abcdef").await.unwrap(), None);
        let other = Session::new(None, Arc::new(Memory::default()), None);
        assert_eq!(refusal(&other, &reference).await.unwrap(), None, "another browser's");
        assert_eq!(logout_url(&session).await.unwrap(), None, "no single sign-on, no logout URL");
    }
}
