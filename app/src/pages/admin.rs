//! The provider admins' page: the fleet, the instance-type and image catalogs, maintenance,
//! stray VMs and tenant quotas.

use leptos::prelude::*;
use portal_types::Error;
use portal_types::views::{InstanceType, Me};

use crate::api::{
    HostSetCordoned, InstanceTypeCreate, InstanceTypeDelete, QuotaDefaultSet, QuotaSet,
    instance_type_list, quota_default_list, quota_get,
};
use crate::form::{FormAction, PostForm};

#[component]
pub fn AdminPage() -> impl IntoView {
    super::guarded(|me| me.provider_admin, |me| view! { <Admin me /> }.into_any())
}

#[component]
fn Admin(me: Me) -> impl IntoView {
    let create = FormAction::<InstanceTypeCreate>::new();
    let delete = ServerAction::<InstanceTypeDelete>::new();
    let set_quota = FormAction::<QuotaSet>::new();
    let cordon = FormAction::<HostSetCordoned>::new();
    let set_default = FormAction::<QuotaDefaultSet>::new();
    let strays = crate::json::resource(|| (), |_| stray_vm_list());
    let defaults =
        crate::json::resource(move || set_default.version().get(), |_| quota_default_list());
    let types = crate::json::resource(
        move || (create.version().get(), delete.version().get()),
        |_| instance_type_list(),
    );
    // `?tenant=<id>` (linked from the tenants page) picks whose quotas to edit.
    let query = leptos_router::hooks::use_query_map();
    let own = me.tenant_id;
    let tenant =
        move || query.with(|q| q.get("tenant").and_then(|t| t.parse().ok())).unwrap_or(own);
    let quota = crate::json::resource(
        move || (tenant(), set_quota.version().get()),
        move |(tenant, _)| quota_get(Some(tenant)),
    );
    let error = move || {
        let err = |v: Option<Result<_, Error>>| v.and_then(|r: Result<_, Error>| r.err());
        err(create.value().get().map(|r| r.map(|_| ())))
            .or_else(|| err(delete.value().get()))
            .or_else(|| err(set_quota.value().get().map(|r| r.map(|_| ()))))
            .or_else(|| err(cordon.value().get()))
            .or_else(|| err(set_default.value().get().map(|r| r.map(|_| ()))))
            .map(|e| e.to_string())
    };
    view! {
        <main class="dashboard">
            <Show when=move || error().is_some()>
                <p class="error" role="alert" data-testid="admin-error">{error}</p>
            </Show>
            <super::fleet::FleetPanel refresh=cordon.version() />
            <section class="panel">
                <h2>"Instance types"</h2>
                <Transition fallback=|| ()>
                    {move || Suspend::new(async move {
                        view! { <TypeTable types=types.await.unwrap_or_default() delete /> }
                    })}
                </Transition>
                <PostForm action=create attr:class="launch" attr:data-testid="type-form">
                    <label>"Name" <input type="text" name="create[name]" required placeholder="h100x1-large" /></label>
                    <label>"GPU model" <input type="text" name="create[gpu_model]" placeholder="H100-SXM5-80GB (empty: CPU only)" /></label>
                    <label>"GPUs"
                        <select name="create[gpu_count]">
                            {[0, 1, 2, 4, 8].map(|n| view! { <option value=n.to_string()>{n}</option> }).collect_view()}
                        </select>
                    </label>
                    <label>"vCPUs" <input type="number" name="create[vcpus]" min="1" max="512" required value="20" /></label>
                    <label>"Memory GiB" <input type="number" name="create[memory_gib]" min="1" max="4096" required value="200" /></label>
                    <label>"Disk GiB" <input type="number" name="create[disk_gib]" min="10" max="65536" required value="200" /></label>
                    <label>"Price ¢/hour" <input type="number" name="create[price_cents_per_hour]" min="0" required value="249" /></label>
                    <button type="submit" class="primary">"Add type"</button>
                </PostForm>
            </section>
            <super::images::ImagesPanel />
            <section class="panel">
                <h2>"Maintenance"</h2>
                <p class="muted">"A cordoned host keeps its VMs but gets no new ones."</p>
                <PostForm action=cordon attr:class="launch" attr:data-testid="cordon-form">
                    <label>"Host" <input type="text" name="host" required placeholder="su1-h07" /></label>
                    <label>"Action"
                        <select name="cordoned">
                            <option value="true">"cordon"</option>
                            <option value="false">"uncordon"</option>
                        </select>
                    </label>
                    <button type="submit" class="primary">"Apply"</button>
                </PostForm>
                <Show when=move || matches!(cordon.value().get(), Some(Ok(())))>
                    <p class="muted" data-testid="cordon-done">"Done."</p>
                </Show>
            </section>
            <section class="panel" data-testid="stray-vms">
                <h2>"Stray VMs"</h2>
                <p class="muted">"VMs a host runs that no instance wants there; they may hold GPUs. The portal removes them after a grace period."</p>
                <Transition fallback=|| ()>
                    {move || Suspend::new(async move { match strays.await {
                        Ok(rows) if rows.is_empty() => view! { <p class="muted">"None."</p> }.into_any(),
                        Ok(rows) => view! {
                            <table class="instances" data-testid="stray-table">
                                <thead><tr><th>"Host"</th><th>"VM"</th><th>"State"</th><th>"Seen since"</th></tr></thead>
                                <tbody>
                                    {rows.into_iter().map(|s| view! {
                                        <tr><td>{s.host}</td><td class="mono">{s.vm_id}</td><td>{s.state}</td><td>{s.since}</td></tr>
                                    }).collect_view()}
                                </tbody>
                            </table>
                        }.into_any(),
                        Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                    }})}
                </Transition>
            </section>
            <section class="panel">
                // One boundary reads the quota, heading included (DESIGN §5).
                <Transition fallback=|| view! { <h2>"Quotas"</h2> }>
                    {move || Suspend::new(async move { match quota.await {
                        Ok(q) => view! {
                            <h2>"Quotas of " {q.tenant_name.clone()}</h2>
                            <table class="instances" data-testid="quota-table">
                                <thead><tr><th>"Resource"</th><th>"Used"</th><th>"Limit"</th></tr></thead>
                                <tbody>
                                    {q.lines.into_iter().map(|l| view! {
                                        <tr>
                                            <td>{l.resource.clone()}</td>
                                            <td>{l.used}</td>
                                            <td>{l.limit_text()} {l.default.then_some(" (default)")}</td>
                                        </tr>
                                    }).collect_view()}
                                </tbody>
                            </table>
                        }.into_any(),
                        Err(e) => view! { <h2>"Quotas"</h2> <p class="error">{e.to_string()}</p> }.into_any(),
                    }})}
                </Transition>
                <PostForm action=set_quota attr:class="launch" attr:data-testid="quota-form">
                    <input type="hidden" name="tenant_id" value=move || tenant().to_string() />
                    <label>"Resource" <input type="text" name="resource" required placeholder="gpus:H100-SXM5-80GB, vcpus, memory_gib, instances" /></label>
                    <label>"Limit" <input type="text" name="limit" placeholder="a number, unlimited, or empty for the default" /></label>
                    <button type="submit" class="primary">"Set quota"</button>
                </PostForm>
            </section>
            <section class="panel">
                <h2>"Default quotas"</h2>
                <p class="muted">"What every tenant may use where it has no limit of its own. A resource with no default and no limit of the tenant's allows nothing."</p>
                <Transition fallback=|| ()>
                    {move || Suspend::new(async move { match defaults.await {
                        Ok(lines) => view! {
                            <table class="instances" data-testid="default-quota-table">
                                <thead><tr><th>"Resource"</th><th>"Default limit"</th></tr></thead>
                                <tbody>
                                    {lines.into_iter().map(|l| view! {
                                        <tr><td>{l.resource.clone()}</td><td>{l.limit_text()}</td></tr>
                                    }).collect_view()}
                                </tbody>
                            </table>
                        }.into_any(),
                        Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                    }})}
                </Transition>
                <PostForm action=set_default attr:class="launch" attr:data-testid="default-quota-form">
                    <label>"Resource" <input type="text" name="resource" required placeholder="gpus:H100-SXM5-80GB, vcpus, memory_gib, instances" /></label>
                    <label>"Limit" <input type="text" name="limit" placeholder="a number, unlimited, or empty for none" /></label>
                    <button type="submit" class="primary">"Set default"</button>
                </PostForm>
            </section>
        </main>
    }
}

#[component]
fn TypeTable(types: Vec<InstanceType>, delete: ServerAction<InstanceTypeDelete>) -> impl IntoView {
    view! {
        <table class="instances" data-testid="type-table">
            <thead><tr><th>"Name"</th><th>"Shape"</th><th>"Disk"</th><th></th></tr></thead>
            <tbody>
                {types.into_iter().map(|t| {
                    let name = t.name.clone();
                    view! {
                        <tr data-testid="type-row" data-name=t.name.clone()>
                            <td class="name">{t.name.clone()}</td>
                            <td>{t.summary()}</td>
                            <td>{format!("{} GiB", t.disk_gib)}</td>
                            <td>
                                <button class="danger" on:click=move |_| {
                                    delete.dispatch(InstanceTypeDelete { name: name.clone() });
                                }>"Remove"</button>
                            </td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
}

/// A VM a host runs that the database does not want there (read-only; the control plane's
/// reconciler removes it after its grace period).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StrayVmRow {
    pub host: String,
    pub vm_id: String,
    pub state: String,
    /// RFC 3339: when the portal first saw it.
    pub since: String,
}

#[server(prefix = "/api/fn", endpoint = "stray_vm_list")]
pub async fn stray_vm_list() -> Result<Vec<StrayVmRow>, Error> {
    let (ctl, _, opctx) = crate::ssr::context().await?;
    let strays = ctl.stray_vm_list(&opctx).await.map_err(crate::ssr::fail)?;
    Ok(strays
        .into_iter()
        .map(|s| StrayVmRow { host: s.host, vm_id: s.vm_id, state: s.state, since: s.since })
        .collect())
}
