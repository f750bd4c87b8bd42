//! The portal's UI: Leptos components rendered on the server and hydrated in the browser,
//! and the server functions they call. Server functions are thin adapters: authenticate,
//! call one control-plane method, map the error.

pub mod api;
mod live;
mod pages;
#[cfg(feature = "ssr")]
pub mod ssr;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::{SsrMode, path};

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
    // Marks the document once the WASM has taken over, so browser tests (and people) can
    // tell a live form from a server-rendered one that would still post natively.
    Effect::new(|_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });
    view! {
        <Stylesheet id="portal" href="/pkg/portal.css" />
        <Title text="GPU Cloud" />
        <Router>
            <Routes fallback=|| view! { <p class="empty">"Page not found."</p> }>
                // Rendered whole before the response starts, so that signing in can be
                // required with a real redirect instead of a half-streamed page.
                <Route path=path!("/") view=pages::dashboard::DashboardPage ssr=SsrMode::Async />
                <Route path=path!("/login") view=pages::login::LoginPage />
                <Route path=path!("/account") view=pages::account::AccountPage ssr=SsrMode::Async />
                <Route path=path!("/instances/:id") view=pages::instance::InstancePage ssr=SsrMode::Async />
                <Route path=path!("/keys") view=pages::keys::KeysPage ssr=SsrMode::Async />
                <Route path=path!("/networking") view=pages::networking::NetworkingPage ssr=SsrMode::Async />
                <Route path=path!("/usage") view=pages::usage::UsagePage ssr=SsrMode::Async />
                <Route path=path!("/usage/invoices/:month") view=pages::invoice::InvoicePage ssr=SsrMode::Async />
                <Route path=path!("/admin/usage") view=pages::billing_admin::ProviderUsagePage ssr=SsrMode::Async />
                <Route path=path!("/admin/prices") view=pages::billing_admin::PricesPage ssr=SsrMode::Async />
                <Route path=path!("/admin") view=pages::admin::AdminPage ssr=SsrMode::Async />
                <Route path=path!("/admin/identity") view=pages::identity::IdentityPage ssr=SsrMode::Async />
                <Route path=path!("/admin/tenants") view=pages::tenancy::TenantsPage ssr=SsrMode::Async />
                <Route path=path!("/users") view=pages::tenancy::UsersPage ssr=SsrMode::Async />
                <Route path=path!("/audit") view=pages::tenancy::AuditPage ssr=SsrMode::Async />
                <Route path=path!("/admin/hosts/:name") view=pages::topology::HostTopologyPage ssr=SsrMode::Async />
                <Route path=path!("/admin/su/:su") view=pages::topology::ScalableUnitPage ssr=SsrMode::Async />
            </Routes>
        </Router>
    }
}
