//! An invoice (`/usage/invoices/:month`; provider admins add `?tenant=<id>`): one line per
//! instance, item and price, each amount rounded once to the cent. It prints as a document
//! (the print stylesheet hides the top bar and the buttons); a CSV of it is one link away.

use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};
use portal_types::billing::{Invoice, utc_second};
use portal_types::ids::TenantUuid;

use crate::api::invoice_get;

#[component]
pub fn InvoicePage() -> impl IntoView {
    super::guarded(|_| true, |_| view! { <InvoiceView /> }.into_any())
}

#[component]
fn InvoiceView() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let month = move || params.with(|p| p.get("month")).unwrap_or_default();
    let tenant = move || query.with(|q| q.get("tenant").and_then(|t| t.parse::<TenantUuid>().ok()));
    let invoice = crate::json::resource(move || (month(), tenant()), |(m, t)| invoice_get(m, t));
    view! {
        <main class="dashboard invoice-page">
            <nav class="crumbs no-print"><a href="/usage">"Usage"</a><span>"Invoice"</span></nav>
            <Transition fallback=|| view! { <p class="loading">"Loading the invoice…"</p> }>
                {move || Suspend::new(async move {
                    match invoice.await {
                        Ok(invoice) => view! { <Document invoice tenant=tenant() /> }.into_any(),
                        Err(e) => view! { <p class="error" data-testid="invoice-error">{e.to_string()}</p> }.into_any(),
                    }
                })}
            </Transition>
        </main>
    }
}

#[component]
fn Document(invoice: Invoice, tenant: Option<TenantUuid>) -> impl IntoView {
    let f = invoice.format.clone();
    let csv = match tenant {
        Some(t) => format!("/usage/invoices/{}/csv?tenant={t}", invoice.month),
        None => format!("/usage/invoices/{}/csv", invoice.month),
    };
    let print = move |_| {
        #[cfg(feature = "hydrate")]
        let _ = window().print();
    };
    let empty = invoice.lines.is_empty();
    view! {
        <section class="panel invoice" data-testid="invoice" data-month=invoice.month.clone()>
            <div class="subbar">
                <h2>"Invoice " {invoice.month.clone()} " · " {invoice.tenant_name.clone()}
                    {invoice.draft.then_some(view! { <span class="badge draft" data-testid="invoice-draft">"draft"</span> })}
                </h2>
                <p class="invoice-actions no-print">
                    <a href=csv download data-testid="invoice-csv">"Download CSV"</a>
                    <button type="button" on:click=print data-testid="invoice-print">"Print"</button>
                </p>
            </div>
            <p class="muted">"Times in UTC. Each line is rounded to the cent once: quantity × seconds × price per hour ÷ 3600."
                {invoice.draft.then_some(" The month is still running: this invoice grows until it ends.")}</p>
            {if empty {
                view! { <p class="muted" data-testid="invoice-empty">"No usage this month."</p> }.into_any()
            } else {
                view! {
                    <table class="instances money" data-testid="invoice-lines">
                        <thead><tr>
                            <th>"Instance"</th><th>"Item"</th><th class="num">"Qty"</th><th>"From – to (UTC)"</th>
                            <th class="num">"Hours"</th><th class="num">"Seconds"</th><th class="num">"Unit price"</th><th class="num">"Amount"</th>
                        </tr></thead>
                        <tbody>
                            {invoice.lines.iter().map(|l| {
                                let unit = if l.item.contains("disk") { "/GiB-h" } else { "/h" };
                                view! {
                                    <tr data-testid="invoice-line" data-name=l.instance_name.clone() data-item=l.item.clone()>
                                        <td class="name">{l.instance_name.clone()}</td>
                                        <td>{l.item.clone()}</td>
                                        <td class="num" data-testid="line-quantity">{l.quantity}</td>
                                        <td class="when">{utc_second(l.from)} " – " {utc_second(l.to)}</td>
                                        <td class="num">{f.hours(l.seconds)}</td>
                                        <td class="num" data-testid="line-seconds">{f.integer(l.seconds)}</td>
                                        <td class="num" data-testid="line-price">{f.price(l.micros_per_hour, unit)}</td>
                                        <td class="num" data-testid="line-amount">{f.cents(l.cents)}</td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                        <tfoot><tr>
                            <th colspan="7">"Total"</th>
                            <th class="num" data-testid="invoice-total">{f.cents(invoice.total_cents)}</th>
                        </tr></tfoot>
                    </table>
                }.into_any()
            }}
        </section>
    }
}
