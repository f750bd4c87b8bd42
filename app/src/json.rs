//! Resources read with the same JSON reader as server functions' answers.
//!
//! A server function's answer (and its `Error`) is decoded with `serde_json::from_slice`
//! (server_fn's `JsonEncoding`), while `Resource::new` reads the value the server rendered
//! into the page with `serde_json::from_str`. The two readers are different types, so every
//! view type's `Deserialize` was compiled twice into the browser bundle. [`resource`] makes a
//! resource whose codec writes the same JSON as `Resource::new` and reads it with
//! `from_slice`: one copy per type. Use it instead of `Resource::new`.

use std::future::Future;

use leptos::prelude::*;
use leptos::server::codee::{Decoder, Encoder};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// JSON as `Resource::new` writes it (`serde_json::to_string`), read with
/// `serde_json::from_slice` like server functions' answers.
pub struct Json;

impl<T: Serialize> Encoder<T> for Json {
    type Error = serde_json::Error;
    type Encoded = String;

    fn encode(val: &T) -> Result<String, serde_json::Error> {
        serde_json::to_string(val)
    }
}

impl<T: DeserializeOwned> Decoder<T> for Json {
    type Error = serde_json::Error;
    type Encoded = str;

    fn decode(val: &str) -> Result<T, serde_json::Error> {
        serde_json::from_slice(val.as_bytes())
    }
}

/// A resource as `Resource::new` makes one (not blocking), with the [`Json`] codec.
#[track_caller]
pub fn resource<S, T, Fut>(
    source: impl Fn() -> S + Send + Sync + 'static,
    fetcher: impl Fn(S) -> Fut + Send + Sync + 'static,
) -> Resource<T, Json>
where
    S: PartialEq + Clone + Send + Sync + 'static,
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    Resource::new_with_options(source, fetcher, false)
}

/// The event stream's messages, read like everything else from the server.
#[cfg(any(feature = "hydrate", test))]
pub fn from_text<T: DeserializeOwned>(text: &str) -> Result<T, serde_json::Error> {
    serde_json::from_slice(text.as_bytes())
}
