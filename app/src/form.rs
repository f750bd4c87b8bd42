//! Forms posted to their server function the way the browser posts them natively.
//!
//! Leptos' `ActionForm` decodes a form into the server function's arguments in the browser
//! (serde_qs) and encodes them again to send them, so every form's argument types were
//! compiled into the bundle twice (the launch form alone was 20 KB brotli of the main
//! module). A [`PostForm`] sends the form's own URL-encoded fields instead, which the server
//! decodes exactly as it decodes a form posted before the page was hydrated, and reads the
//! answer as a server function call does: the same JSON, the same error, the same redirect.

use std::ops::Deref;

use leptos::prelude::*;
use leptos::server::ServerActionError;
use leptos::server_fn::ServerFn;
use leptos::server_fn::error::ServerFnUrlError;
use portal_types::Error;
use serde::de::DeserializeOwned;

/// A server function a [`PostForm`] can post to: any of ours whose answer is JSON.
pub trait FormFn:
    ServerFn<
        Error = Error,
        InputStreamError = Error,
        OutputStreamError = Error,
        Output: DeserializeOwned + Send + Sync,
    > + 'static
{
}

impl<S> FormFn for S where
    S: ServerFn<
            Error = Error,
            InputStreamError = Error,
            OutputStreamError = Error,
            Output: DeserializeOwned + Send + Sync,
        > + 'static
{
}

/// The action behind a [`PostForm`]: dispatched with the form's URL-encoded fields, its value
/// is the server function's answer. Its `value`, `pending` and `version` work as a
/// `ServerAction`'s do.
pub struct FormAction<S: ServerFn> {
    action: Action<String, Result<S::Output, Error>>,
}

impl<S: FormFn> FormAction<S> {
    pub fn new() -> Self {
        // A form posted before the page was hydrated that failed comes back with the error in
        // the address (`?__err=…&__path=…`), as for an `ActionForm`.
        let failed = use_context::<ServerActionError>()
            .filter(|e| e.path() == S::PATH)
            .map(|e| Err(ServerFnUrlError::<Error>::decode_err(e.err())));
        Self { action: Action::new_with_value(failed, |body: &String| post::<S>(body.clone())) }
    }
}

impl<S: ServerFn> Deref for FormAction<S> {
    type Target = Action<String, Result<S::Output, Error>>;

    fn deref(&self) -> &Self::Target {
        &self.action
    }
}

impl<S: ServerFn> Clone for FormAction<S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S: ServerFn> Copy for FormAction<S> {}

/// `<form method="post" action=…>` for server function `S`: without JavaScript the browser
/// posts it, once hydrated the page does and shows the answer through `action`. Attributes
/// given as `attr:…` land on the form.
#[component]
pub fn PostForm<S: FormFn>(action: FormAction<S>, children: Children) -> impl IntoView {
    let submit = move |ev: leptos::ev::SubmitEvent| {
        if ev.default_prevented() {
            return;
        }
        if let Some(body) = form_body(&ev) {
            ev.prevent_default();
            action.dispatch(body);
        }
    };
    view! { <form method="post" action=S::PATH on:submit=submit>{children()}</form> }
}

/// The submitted form's fields (and its submit button's), URL-encoded as the browser would
/// post them.
fn form_body(ev: &leptos::ev::SubmitEvent) -> Option<String> {
    let fields = leptos::form::form_data_from_event(ev).ok()?;
    let encoded = leptos::web_sys::UrlSearchParams::new_with_str_sequence_sequence(&fields).ok()?;
    encoded.to_string().as_string()
}

/// Posts URL-encoded fields to `S` and reads its answer as `S`'s own client would: JSON on
/// success, the encoded `Error` on an error status, and the redirect it asks for.
async fn post<S: FormFn>(body: String) -> Result<S::Output, Error> {
    use leptos::server_fn::client::Client;
    use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
    use leptos::server_fn::redirect::call_redirect_hook;
    use leptos::server_fn::request::ClientReq;
    use leptos::server_fn::response::ClientRes;

    let request = <S::Client as Client<Error>>::Request::try_new_post(
        S::PATH,
        "application/x-www-form-urlencoded",
        "application/json",
        body,
    )?;
    let response = S::Client::send(request).await?;
    let (status, location) = (response.status(), response.location());
    let redirect = (300..=399).contains(&status) || response.has_redirect();
    let bytes = response.try_into_bytes().await?;
    if (400..=599).contains(&status) {
        return Err(Error::de(bytes));
    }
    let output = serde_json::from_slice(&bytes).map_err(|e| {
        Error::from_server_fn_error(ServerFnErrorErr::Deserialization(e.to_string()))
    })?;
    if redirect {
        call_redirect_hook(&location);
    }
    Ok(output)
}
