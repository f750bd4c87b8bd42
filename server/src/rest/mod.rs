//! `/api/v1`: the REST API. JSON in and out, API tokens (`Authorization: Bearer gpc_…`) or
//! the browser's session, the controller's authorization, errors as [`extract::ErrorBody`].
//! The OpenAPI 3.1 document is generated from these handlers and the shared types, served at
//! `/api/v1/openapi.json`, and shown as a page at `/api/v1/docs`.

mod account;
mod admin;
mod catalog;
mod docs;
mod extract;
mod identity;
mod instances;
mod keys;
mod network;
mod operators;
mod public_ips;
mod usage;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use portal_controller::Controller;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa_axum::router::OpenApiRouter;

/// Where the API lives.
pub const PREFIX: &str = "/api/v1";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "GPU cloud portal API",
        description = "Instances with passthrough GPUs, images, SSH keys, networks, usage and \
            administration. Authenticate with an API token from the portal's Account page: \
            `Authorization: Bearer gpc_…`. Errors are `{code, message, request_id}` with the \
            HTTP status. Launches, power changes and deletions answer 202 and go on as sagas: \
            poll the instance or follow the server-sent events at `/api/v1/events`."
    ),
    components(schemas(extract::ErrorBody, portal_types::params::PowerAction))
)]
struct ApiDoc;

/// The API's routes (state: the controller) and its OpenAPI document.
pub fn router() -> (Router<Arc<Controller>>, utoipa::openapi::OpenApi) {
    let api = OpenApiRouter::new()
        .merge(instances::router())
        .merge(catalog::router())
        .merge(keys::router())
        .merge(network::router())
        .merge(public_ips::router())
        .merge(usage::router())
        .merge(admin::router())
        .merge(account::router())
        .merge(identity::router())
        .merge(operators::router());
    let (router, mut doc) =
        OpenApiRouter::with_openapi(ApiDoc::openapi()).nest(PREFIX, api).split_for_parts();
    complete(&mut doc);
    let json = Arc::new(doc.to_pretty_json().unwrap_or_default());
    let page = Arc::new(docs::page(&doc));
    let router = router
        .route(
            &format!("{PREFIX}/openapi.json"),
            get(move || {
                let json = Arc::clone(&json);
                async move {
                    ([(axum::http::header::CONTENT_TYPE, "application/json")], (*json).clone())
                }
            }),
        )
        .route(&format!("{PREFIX}/docs"), get(move || docs::serve(Arc::clone(&page))));
    (router, doc)
}

/// Every route of the API, `METHOD /path` (for `--print-routes`).
pub fn operations() -> Vec<String> {
    let (_, doc) = router();
    let json = serde_json::to_value(&doc).unwrap_or_default();
    let mut routes = vec![format!("GET {PREFIX}/openapi.json"), format!("GET {PREFIX}/docs")];
    for (path, item) in json["paths"].as_object().into_iter().flatten() {
        for method in item.as_object().into_iter().flatten().map(|(m, _)| m.to_uppercase()) {
            routes.push(format!("{method} {path}"));
        }
    }
    routes
}

/// The HTTP statuses any operation may answer with an error body, and why.
const ERRORS: [(&str, &str); 9] = [
    ("400", "The request is not valid; the message says what to change."),
    ("401", "No valid API token or session."),
    ("403", "The caller's role does not allow this."),
    ("404", "No such object in the caller's tenant."),
    ("409", "The object's state does not allow this now."),
    ("429", "Too many requests; retry after `Retry-After` seconds."),
    ("500", "A failure on the portal's side; quote the request id."),
    ("503", "A dependency is down; retry after `Retry-After` seconds."),
    ("507", "Not enough free capacity for the launch."),
];

/// Adds what every operation shares: the bearer-token security scheme, and the error
/// responses with their body.
fn complete(doc: &mut utoipa::openapi::OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.security_schemes.insert(
        "token".to_owned(),
        RefOr::T(SecurityScheme::Http(
            Http::builder().scheme(HttpAuthScheme::Bearer).bearer_format("gpc_…").build(),
        )),
    );
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
            )
            .build()
    };
    for item in doc.paths.paths.values_mut() {
        for op in [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch]
            .into_iter()
            .flatten()
        {
            op.security = Some(vec![SecurityRequirement::new("token", Vec::<String>::new())]);
            for (status, description) in ERRORS {
                op.responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| RefOr::T(error(description)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_with_every_operation_complete() {
        let (_, doc) = router();
        let json: serde_json::Value = serde_json::to_value(&doc).unwrap();
        assert!(json["openapi"].as_str().unwrap().starts_with("3.1"), "{}", json["openapi"]);
        let paths = json["paths"].as_object().unwrap();
        assert!(paths.contains_key("/api/v1/instances"), "{:?}", paths.keys());
        assert!(paths.contains_key("/api/v1/instances/{id}/{action}"));
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                assert!(responses.contains_key("401"), "{method} {path} lacks 401");
                assert!(
                    responses.keys().any(|s| s.starts_with('2')),
                    "{method} {path} has no success response"
                );
                assert!(op["operationId"].is_string(), "{method} {path} has no operationId");
            }
        }
        // Every schema a response or body names is defined.
        let text = json.to_string();
        let schemas = json["components"]["schemas"].as_object().unwrap();
        for reference in text.split("\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(schemas.contains_key(name), "schema {name} is referenced, not defined");
        }
    }
}
