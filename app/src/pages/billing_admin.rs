//! Provider-admin billing pages: "Usage (all tenants)" (`/admin/usage?month=YYYY-MM`): the
//! month's revenue, GPU use per model, per scalable unit and per tenant, and a daily chart;
//! and "Prices" (`/admin/prices`): every item's price versions and the form that sets a new
//! one, now or from a later time (never in the past).

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use portal_types::billing::{
    GpuModelUse, MoneyFormat, PriceItem, PriceList, ProviderUsage, utc_minute,
};

use super::charts::StackedChart;
use super::usage::{Breakdown, MonthPicker};
use crate::api::{PriceSet as SetPrice, price_list, provider_usage};
use crate::form::{FormAction, PostForm};

#[component]
pub fn ProviderUsagePage() -> impl IntoView {
    super::guarded(|me| me.provider_admin, |_| view! { <ProviderUsageView /> }.into_any())
}

#[component]
fn ProviderUsageView() -> impl IntoView {
    let query = use_query_map();
    let month = move || query.with(|q| q.get("month")).filter(|m| !m.is_empty());
    let usage = crate::json::resource(month, provider_usage);
    view! {
        <main class="dashboard usage">
            <Transition fallback=|| view! { <p class="loading">"Loading usage…"</p> }>
                {move || Suspend::new(async move {
                    match usage.await {
                        Ok(u) => view! { <Provider u /> }.into_any(),
                        Err(e) => view! { <p class="error" data-testid="usage-error">{e.to_string()}</p> }.into_any(),
                    }
                })}
            </Transition>
        </main>
    }
}

#[component]
fn Provider(u: ProviderUsage) -> impl IntoView {
    let f = u.format.clone();
    // Every model that earned something, in the order first seen, is a series of the chart.
    let mut series: Vec<String> = Vec::new();
    for (model, _) in u.days.iter().flat_map(|d| d.by_model.iter()) {
        if !series.contains(model) {
            series.push(model.clone());
        }
    }
    let bars: Vec<(String, Vec<(String, i64)>)> =
        u.days.iter().map(|d| (d.day.clone(), d.by_model.clone())).collect();
    let label = format!("Revenue per day in {} by GPU model: {}", u.month, series.join(", "));
    let csv = format!("/admin/usage/{}/csv", u.month);
    view! {
        <section class="panel">
            <div class="subbar">
                <h2 data-testid="provider-usage-title">"All tenants in " {u.month.clone()}
                    {u.current.then_some(view! { <span class="badge">"to date"</span> })}
                </h2>
                <MonthPicker base="/admin/usage" months=u.months.clone() selected=u.month.clone() />
            </div>
            <div class="stats">
                <div class="stat"><span class="value" data-testid="provider-total">{f.cents(u.total_cents)}</span>
                    <span class="label">"revenue"</span></div>
            </div>
            <p><a href=csv download data-testid="provider-csv">"Download CSV (every invoice line)"</a></p>
        </section>
        <section class="panel">
            <h2>"Revenue per day (UTC)"</h2>
            <StackedChart label bars series format=f.clone() />
        </section>
        <section class="panel" data-testid="by-gpu-model">
            <h2>"Per GPU model"</h2>
            <GpuModels models=u.gpu_models.clone() format=f.clone() />
        </section>
        <div class="breakdowns">
            <Breakdown title="Per scalable unit" testid="by-unit" lines=u.by_unit.clone() format=f.clone() />
            <Breakdown title="Per tenant" testid="by-tenant" lines=u.by_tenant.clone() format=f.clone() />
        </div>
    }
}

#[component]
fn GpuModels(models: Vec<GpuModelUse>, format: MoneyFormat) -> impl IntoView {
    view! {
        <table class="instances money" data-testid="gpu-model-table">
            <thead><tr>
                <th>"Model"</th><th class="num">"Revenue"</th><th class="num">"GPU-hours used"</th>
                <th class="num">"Utilization"</th><th class="num">"GPUs"</th><th class="num">"Idle now"</th>
            </tr></thead>
            <tbody>
                {models.into_iter().map(|m| view! {
                    <tr data-testid="gpu-model-row" data-name=m.gpu_model.clone()>
                        <td class="name">{m.gpu_model.clone()}</td>
                        <td class="num">{format.cents(m.cents)}</td>
                        <td class="num">{format.hours(m.gpu_seconds)}</td>
                        <td class="num" data-testid="gpu-utilization">{utilization(&format, m.gpu_seconds, m.capacity_gpu_seconds)}</td>
                        <td class="num">{m.gpus}</td>
                        <td class="num">{m.idle_gpus}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
}

/// Used of the capacity, in percent with one decimal (integer math): `12.3 %`.
fn utilization(format: &MoneyFormat, used: i64, capacity: i64) -> String {
    if capacity <= 0 {
        return "—".to_owned();
    }
    let tenths = (used * 1000 + capacity / 2) / capacity;
    format!("{}{}{} %", format.integer(tenths / 10), format.decimal, tenths % 10)
}

#[component]
pub fn PricesPage() -> impl IntoView {
    super::guarded(|me| me.provider_admin, |_| view! { <Prices /> }.into_any())
}

#[component]
fn Prices() -> impl IntoView {
    let set = FormAction::<SetPrice>::new();
    // Fetched again after a price is saved only: a refusal leaves the form as typed.
    let saves = RwSignal::new(0u64);
    Effect::new(move |_| {
        if let Some(Ok(())) = set.value().get() {
            saves.update(|n| *n += 1);
        }
    });
    let list = crate::json::resource(move || saves.get(), |_| price_list());
    let refused = move || set.value().get().and_then(|r| r.err()).map(|e| e.to_string());
    let saved = move || matches!(set.value().get(), Some(Ok(())));
    view! {
        <main class="dashboard">
            <section class="panel">
                <h2>"Prices"</h2>
                <p class="muted">"A new price applies from its start on; what was billed before keeps the price it had. Times are UTC."</p>
                <Transition fallback=|| view! { <p class="loading">"Loading prices…"</p> }>
                    {move || Suspend::new(async move {
                        match list.await {
                            Ok(list) => view! { <PriceTable list set /> }.into_any(),
                            Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                        }
                    })}
                </Transition>
                <Show when=move || refused().is_some()>
                    <p class="error" role="alert" data-testid="price-error">{refused}</p>
                </Show>
                <Show when=saved>
                    <p class="muted" data-testid="price-saved">"Saved."</p>
                </Show>
            </section>
        </main>
    }
}

/// `/h` for an instance type, `/GiB-h` for a stopped disk.
fn unit_suffix(item: &PriceItem) -> &'static str {
    if item.unit.contains("GiB") { "/GiB-h" } else { "/h" }
}

#[component]
fn PriceTable(list: PriceList, set: FormAction<SetPrice>) -> impl IntoView {
    let f = list.format.clone();
    let names: Vec<String> = list.items.iter().map(|i| i.item.clone()).collect();
    view! {
        <table class="instances money" data-testid="price-table">
            <thead><tr><th>"Item"</th><th>"Unit"</th><th>"Versions"</th></tr></thead>
            <tbody>
                {list.items.into_iter().map(|item| {
                    let suffix = unit_suffix(&item);
                    let now = item.versions.iter().position(|v| v.current);
                    view! {
                        <tr data-testid="price-row" data-item=item.item.clone()>
                            <td class="name">{item.item.clone()}</td>
                            <td class="muted">{item.unit.clone()}</td>
                            <td>
                                <ul class="versions">
                                    {item.versions.iter().enumerate().map(|(i, v)| {
                                        let at = |ms: i64| utc_minute(ms.div_euclid(1000));
                                        let future = now.is_none_or(|n| i > n);
                                        // A past version ends where the next one starts.
                                        let until = item.versions.get(i + 1).map(|next| at(next.effective_from));
                                        let note = match (v.current, future, until) {
                                            (true, _, _) => "current".to_owned(),
                                            (false, true, _) => format!("from {} UTC", at(v.effective_from)),
                                            (false, false, Some(until)) => format!("until {until} UTC"),
                                            (false, false, None) => "earlier".to_owned(),
                                        };
                                        view! {
                                            <li class:current=v.current class:future=future data-testid="price-version"
                                                data-current=v.current.to_string() data-future=future.to_string()>
                                                <strong>{f.price(v.micros_per_hour, suffix)}</strong> " "
                                                <span class=if v.current { "badge" } else { "muted" }>{note}</span>
                                            </li>
                                        }
                                    }).collect_view()}
                                </ul>
                            </td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
        <h3>"Set a price"</h3>
        <PostForm action=set attr:class="launch" attr:data-testid="price-form">
            <label>"Item"
                <select name="set[item]" data-testid="price-item">
                    {names.into_iter().map(|n| view! { <option value=n.clone()>{n.clone()}</option> }).collect_view()}
                </select>
            </label>
            <label>"Price per hour (per GiB-hour for a disk)"
                <input type="text" name="set[price]" required inputmode="decimal" placeholder="2.49" data-testid="price-amount" />
            </label>
            <label>"Starts (UTC; empty: now)"
                <input type="datetime-local" name="set[effective_from]" data-testid="price-from" />
            </label>
            <button type="submit" class="primary" data-testid="price-submit">"Set price"</button>
        </PostForm>
    }
}
