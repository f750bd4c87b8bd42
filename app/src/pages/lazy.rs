//! The pages loaded on demand: the admin pages, the instance page and the rarely used ones
//! (sign-in among them: once a session, while the dashboard is every visit's first page).
//! Each route here is a split point (`#[lazy_route]`): in the browser its page is cut out of
//! the main WASM module into a chunk of its own (`target/site/pkg/split_*.wasm`, with
//! `chunk_*.wasm` for code that several of them share), fetched when the route is first
//! entered, so that a signed-in user's first load carries only the dashboard.
//! On the server they render as every other page; in the browser, the entry point
//! (app/hydrate) awaits the chunk of the page being hydrated.
//!
//! The browser build must go through `wasm-split-cli` (`build_site` in .ci/lib.sh): the split
//! points are imports that only it resolves.

// The split points are `extern "C"` imports and `#[no_mangle]` exports that wasm-split
// rewires; `#[lazy_route]` writes them into this module, in the browser build only.
#![allow(unsafe_code)]

use leptos::prelude::*;
use leptos_router::{LazyRoute, lazy_route};

use super::{account, admin, billing_admin, identity, instance, invoice, keys, login, networking};
use super::{public_ips, tenancy, topology, usage};

/// `/login`
pub struct Login;
#[lazy_route]
impl LazyRoute for Login {
    fn data() -> Self {
        Self
    }
    fn view(_this: Self) -> AnyView {
        view! { <login::LoginPage /> }.into_any()
    }
}

/// `/account`
pub struct Account;
#[lazy_route]
impl LazyRoute for Account {
    fn data() -> Self {
        Self
    }
    fn view(_this: Self) -> AnyView {
        view! { <account::AccountPage /> }.into_any()
    }
}

/// `/instances/:id`, with its console (xterm.js is loaded by the console tab itself)
pub struct Instance;
#[lazy_route]
impl LazyRoute for Instance {
    fn data() -> Self {
        Self
    }
    fn view(_this: Self) -> AnyView {
        view! { <instance::InstancePage /> }.into_any()
    }
}

/// `/keys`
pub struct Keys;
#[lazy_route]
impl LazyRoute for Keys {
    fn data() -> Self {
        Self
    }
    fn view(_this: Self) -> AnyView {
        view! { <keys::KeysPage /> }.into_any()
    }
}

/// `/networking`
pub struct Networking;
#[lazy_route]
impl LazyRoute for Networking {
    fn data() -> Self {
        Self
    }
    fn view(_this: Self) -> AnyView {
        view! { <networking::NetworkingPage /> }.into_any()
    }
}

/// `/networking/public-ips`
pub struct PublicIps;
#[lazy_route]
impl LazyRoute for PublicIps {
    fn data() -> Self {
        Self
    }
    fn view(_this: Self) -> AnyView {
        view! { <public_ips::PublicIpsPage /> }.into_any()
    }
}

/// `/usage`
pub struct Usage;
#[lazy_route]
impl LazyRoute for Usage {
    fn data() -> Self {
        Self
    }
    fn view(_this: Self) -> AnyView {
        view! { <usage::UsagePage /> }.into_any()
    }
}

/// `/usage/invoices/:month`
pub struct Invoice;
#[lazy_route]
impl LazyRoute for Invoice {
    fn data() -> Self {
        Self
    }
    fn view(_this: Self) -> AnyView {
        view! { <invoice::InvoicePage /> }.into_any()
    }
}

/// `/admin/usage`
pub struct ProviderUsage;
#[lazy_route]
impl LazyRoute for ProviderUsage {
    fn data() -> Self {
        Self
    }
    fn view(_this: Self) -> AnyView {
        view! { <billing_admin::ProviderUsagePage /> }.into_any()
    }
}

/// `/admin/prices`
pub struct Prices;
#[lazy_route]
impl LazyRoute for Prices {
    fn data() -> Self {
        Self
    }
    fn view(_this: Self) -> AnyView {
        view! { <billing_admin::PricesPage /> }.into_any()
    }
}

/// `/admin/public-ip-pools`
pub struct PublicIpPools;
#[lazy_route]
impl LazyRoute for PublicIpPools {
    fn data() -> Self {
        Self
    }
    fn view(_this: Self) -> AnyView {
        view! { <public_ips::PublicIpPoolsPage /> }.into_any()
    }
}

/// `/admin`
pub struct Admin;
#[lazy_route]
impl LazyRoute for Admin {
    fn data() -> Self {
        Self
    }
    fn view(_this: Self) -> AnyView {
        view! { <admin::AdminPage /> }.into_any()
    }
}

/// `/admin/identity`
pub struct Identity;
#[lazy_route]
impl LazyRoute for Identity {
    fn data() -> Self {
        Self
    }
    fn view(_this: Self) -> AnyView {
        view! { <identity::IdentityPage /> }.into_any()
    }
}

/// `/admin/tenants`
pub struct Tenants;
#[lazy_route]
impl LazyRoute for Tenants {
    fn data() -> Self {
        Self
    }
    fn view(_this: Self) -> AnyView {
        view! { <tenancy::TenantsPage /> }.into_any()
    }
}

/// `/users`
pub struct Users;
#[lazy_route]
impl LazyRoute for Users {
    fn data() -> Self {
        Self
    }
    fn view(_this: Self) -> AnyView {
        view! { <tenancy::UsersPage /> }.into_any()
    }
}

/// `/audit`
pub struct Audit;
#[lazy_route]
impl LazyRoute for Audit {
    fn data() -> Self {
        Self
    }
    fn view(_this: Self) -> AnyView {
        view! { <tenancy::AuditPage /> }.into_any()
    }
}

/// `/admin/hosts/:name`
pub struct HostTopology;
#[lazy_route]
impl LazyRoute for HostTopology {
    fn data() -> Self {
        Self
    }
    fn view(_this: Self) -> AnyView {
        view! { <topology::HostTopologyPage /> }.into_any()
    }
}

/// `/admin/su/:su`
pub struct ScalableUnit;
#[lazy_route]
impl LazyRoute for ScalableUnit {
    fn data() -> Self {
        Self
    }
    fn view(_this: Self) -> AnyView {
        view! { <topology::ScalableUnitPage /> }.into_any()
    }
}

/// `/admin/su/:su/fabric`
pub struct ScalableUnitFabric;
#[lazy_route]
impl LazyRoute for ScalableUnitFabric {
    fn data() -> Self {
        Self
    }
    fn view(_this: Self) -> AnyView {
        view! { <topology::ScalableUnitFabricPage /> }.into_any()
    }
}
