//! The ID token: signature, issuer, audience, expiry, nonce and `at_hash` checked by
//! `openidconnect`, each refusal turned into its sentence.

use openidconnect::core::CoreErrorResponseType;
use openidconnect::{
    ClaimsVerificationError, RequestTokenError, SignatureVerificationError, StandardErrorResponse,
};
use portal_types::Error;

use super::flow::{Claims, unreachable_provider};
use super::{refuse, sanitize};

/// How far ahead of ours a provider's clock may run.
const MAX_CLOCK_SKEW_S: i64 = 60;

/// Refuses an ID token issued in the future. `openidconnect` accepts any `iat` unless told
/// otherwise; a token from the future means a wrong clock at the provider or a token made
/// ahead of time to outlive its expiry check, and neither should sign anyone in.
pub(super) fn check_issued_at(claims: &Claims) -> Result<(), Error> {
    let now_s = crate::datastore::now_ms() / 1000;
    let ahead = claims.issue_time().timestamp() - now_s;
    if ahead > MAX_CLOCK_SKEW_S {
        return Err(refuse(format!(
            "The ID token was issued in the future ({ahead} s ahead of the portal's clock); \
             sign in again, and ask the identity provider's admin to check its clock if it \
             happens again."
        )));
    }
    Ok(())
}

pub(super) fn bad_at_hash() -> Error {
    refuse(
        "The ID token's at_hash does not match the access token (a substituted token); sign in \
         again.",
    )
}

pub(super) fn token_error<RE: std::error::Error + 'static>(
    display: &str,
    e: RequestTokenError<RE, StandardErrorResponse<CoreErrorResponseType>>,
) -> Error {
    match e {
        RequestTokenError::ServerResponse(r) => {
            let detail = r.error_description().map(|d| format!(": {}", sanitize(d)));
            refuse(format!(
                "{display} refused the sign-in code ({}{}); sign in again.",
                r.error().as_ref(),
                detail.unwrap_or_default()
            ))
        }
        RequestTokenError::Request(e) => unreachable_provider(display, e),
        RequestTokenError::Parse(e, _) => {
            refuse(format!("{display} answered the token request with something unreadable ({e})."))
        }
        RequestTokenError::Other(e) => {
            refuse(format!("{display} answered the token request unexpectedly ({}).", sanitize(&e)))
        }
    }
}

pub(super) fn claims_error(display: &str, issuer: &str, e: ClaimsVerificationError) -> Error {
    use ClaimsVerificationError as C;
    use SignatureVerificationError as S;
    let sentence = match e {
        C::InvalidIssuer(_) => format!(
            "The ID token was not issued by {issuer} (wrong issuer); sign in again or ask a \
             provider admin to check the issuer URL."
        ),
        C::InvalidAudience(_) => format!(
            "The ID token was issued for another application (wrong audience); ask a provider \
             admin to check the client ID of {display}."
        ),
        C::Expired(_) => "The ID token has expired (expired token); sign in again.".to_owned(),
        C::InvalidNonce(_) => "The ID token's nonce does not match this sign-in (nonce \
                               mismatch, a replayed or substituted token); sign in again."
            .to_owned(),
        C::SignatureVerification(S::NoSignature) => {
            "The ID token is unsigned (alg=none, unsigned token), which is refused; sign in \
             again."
                .to_owned()
        }
        C::SignatureVerification(S::DisallowedAlg(alg) | S::UnsupportedAlg(alg))
            if alg.contains("none") =>
        {
            "The ID token is unsigned (alg=none, unsigned token), which is refused; sign in \
             again."
                .to_owned()
        }
        C::SignatureVerification(S::DisallowedAlg(alg) | S::UnsupportedAlg(alg)) => format!(
            "The ID token is signed with {}, which {display} does not advertise or the portal \
             does not accept; sign in again.",
            sanitize(&alg)
        ),
        C::SignatureVerification(_) => format!(
            "The ID token's signature does not verify with {display}'s published keys (bad \
             signature); sign in again."
        ),
        other => {
            format!("The ID token was refused ({}); sign in again.", sanitize(&other.to_string()))
        }
    };
    refuse(sentence)
}
