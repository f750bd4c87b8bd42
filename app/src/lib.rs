//! The portal's UI: Leptos components rendered on the server and hydrated in the browser,
//! and the server functions they call. Server functions are thin adapters: authenticate,
//! call one control-plane method, map the error.

pub mod api;
mod form;
mod json;
mod live;
mod pages;
#[cfg(feature = "ssr")]
pub mod ssr;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::{Lazy, SsrMode, path};

/// The HTML document around the app, rendered on the server only.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    ssr::content_security_policy();
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <link rel="icon" type="image/svg+xml" href="/favicon.svg" />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // `<body data-hydrated>`, which tells a live form from a server-rendered one that would
    // still post natively, is set by the WASM entry point (app/hydrate) once the whole page,
    // a lazily loaded one included, has been hydrated.
    view! {
        <Stylesheet id="portal" href="/pkg/portal.css" />
        <Title text="GPU Cloud" />
        <Router>
            // The admin pages and the rarely used ones are split out of the browser bundle
            // and loaded on first use (pages/lazy.rs).
            <Routes fallback=|| view! { <p class="empty">"Page not found."</p> }>
                // Rendered whole before the response starts, so that signing in can be
                // required with a real redirect instead of a half-streamed page.
                <Route path=path!("/") view=pages::dashboard::DashboardPage ssr=SsrMode::Async />
                <Route path=path!("/login") view={Lazy::<pages::lazy::Login>::new()} />
                <Route path=path!("/account") view={Lazy::<pages::lazy::Account>::new()} ssr=SsrMode::Async />
                <Route path=path!("/instances/:id") view={Lazy::<pages::lazy::Instance>::new()} ssr=SsrMode::Async />
                <Route path=path!("/keys") view={Lazy::<pages::lazy::Keys>::new()} ssr=SsrMode::Async />
                <Route path=path!("/networking") view={Lazy::<pages::lazy::Networking>::new()} ssr=SsrMode::Async />
                <Route path=path!("/networking/public-ips") view={Lazy::<pages::lazy::PublicIps>::new()} ssr=SsrMode::Async />
                <Route path=path!("/usage") view={Lazy::<pages::lazy::Usage>::new()} ssr=SsrMode::Async />
                <Route path=path!("/usage/invoices/:month") view={Lazy::<pages::lazy::Invoice>::new()} ssr=SsrMode::Async />
                <Route path=path!("/admin/usage") view={Lazy::<pages::lazy::ProviderUsage>::new()} ssr=SsrMode::Async />
                <Route path=path!("/admin/prices") view={Lazy::<pages::lazy::Prices>::new()} ssr=SsrMode::Async />
                <Route path=path!("/admin/public-ip-pools") view={Lazy::<pages::lazy::PublicIpPools>::new()} ssr=SsrMode::Async />
                <Route path=path!("/admin") view={Lazy::<pages::lazy::Admin>::new()} ssr=SsrMode::Async />
                <Route path=path!("/admin/identity") view={Lazy::<pages::lazy::Identity>::new()} ssr=SsrMode::Async />
                <Route path=path!("/admin/tenants") view={Lazy::<pages::lazy::Tenants>::new()} ssr=SsrMode::Async />
                <Route path=path!("/users") view={Lazy::<pages::lazy::Users>::new()} ssr=SsrMode::Async />
                <Route path=path!("/audit") view={Lazy::<pages::lazy::Audit>::new()} ssr=SsrMode::Async />
                <Route path=path!("/admin/hosts/:name") view={Lazy::<pages::lazy::HostTopology>::new()} ssr=SsrMode::Async />
                <Route path=path!("/admin/su/:su") view={Lazy::<pages::lazy::ScalableUnit>::new()} ssr=SsrMode::Async />
                <Route path=path!("/admin/su/:su/fabric") view={Lazy::<pages::lazy::ScalableUnitFabric>::new()} ssr=SsrMode::Async />
            </Routes>
        </Router>
    }
}
