//! The HTTP surface: Leptos pages and server functions, the live event stream, the serial
//! consoles, static assets, health, and the session layer around all of it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use axum::Router;
use axum::routing::get;
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::{LeptosRoutes, generate_route_list};
use portal_app::{App, shell};
use portal_controller::Controller;

use crate::config::Config;

/// REST routes besides the server functions (for `--print-routes`).
pub const REST_ROUTES: [(&str, &str); 4] = [
    ("GET", "/api/v1/events"),
    ("GET", crate::console::PATH),
    ("GET", "/usage/invoices/{month}/csv"),
    ("GET", "/admin/usage/{month}/csv"),
];

pub async fn router(
    controller: Arc<Controller>,
    config: &Config,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Router> {
    let site_root = config.site_root.to_string_lossy().into_owned();
    let bundle = config.site_root.join("pkg").join("portal_bg.wasm");
    if !bundle.exists() {
        return Err(anyhow!(
            "the browser bundle {} is missing; build it with the README's run command or pass \
             --site-root",
            bundle.display()
        ));
    }
    let options = LeptosOptions::builder()
        .output_name("portal")
        .site_root(site_root)
        .site_pkg_dir("pkg")
        .site_addr(config.listen)
        .build();

    let store = portal_web::DbSessionStore::new(controller.datastore().clone());
    let sweeper = store.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(600));
        loop {
            every.tick().await;
            if let Err(e) = sweeper.delete_expired().await {
                tracing::warn!(error = %e, "cannot delete expired sessions");
            }
        }
    });
    let sessions = portal_web::layer(store, config.secure_cookies || config.is_https());

    let public_origin = crate::csrf::PublicOrigin::from_url(config.public_url.as_deref());
    let routes = generate_route_list(App);
    let (rest, _) = crate::rest::router();
    let context_controller = Arc::clone(&controller);
    let app = Router::new()
        .route("/api/v1/events", get(crate::live::events))
        .route(crate::console::PATH, get(crate::console::console))
        .route("/usage/invoices/{month}/csv", get(crate::billing_csv::invoice))
        .route("/admin/usage/{month}/csv", get(crate::billing_csv::provider))
        .route("/healthz", get(|| async { "ok" }))
        .merge(crate::metrics::routes(
            Arc::clone(&controller),
            config.metrics_token.clone(),
            stopping.clone(),
        )?)
        .merge(rest)
        .merge(crate::oidc_routes::router(Arc::clone(&controller), config)?)
        .with_state(Arc::clone(&controller))
        .leptos_routes_with_context(
            &options,
            routes,
            move || {
                provide_context(Arc::clone(&context_controller));
                provide_context(portal_app::ssr::RequestActor::default());
            },
            {
                let options = options.clone();
                move || shell(options.clone())
            },
        )
        .fallback(leptos_axum::file_and_error_handler(shell))
        .with_state(options)
        .layer(axum::middleware::from_fn_with_state(
            crate::render::RenderPool::new(crate::render::PAGE_DEADLINE),
            crate::render::isolate,
        ))
        .layer(axum::Extension(crate::live::Stopping(stopping)))
        .layer(axum::Extension(public_origin.clone()))
        .layer(sessions)
        .layer(axum::middleware::from_fn_with_state(public_origin, crate::csrf::guard))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(config.trusted_proxies.clone()),
            crate::client_ip::resolve,
        ))
        .layer(axum::middleware::from_fn_with_state(
            crate::protect::InFlight::new(crate::protect::MAX_IN_FLIGHT),
            crate::protect::shed_load,
        ))
        // Outermost, so that requests refused above (busy, too large) are counted and
        // tagged too.
        .layer(axum::middleware::from_fn(crate::metrics::track))
        .layer(axum::middleware::from_fn(crate::request_id::tag));
    let app = crate::protect::security_headers(config.is_https()).into_iter().fold(
        app,
        |app, (name, value)| {
            app.layer(tower_http::set_header::SetResponseHeaderLayer::if_not_present(name, value))
        },
    );
    Ok(app)
}
