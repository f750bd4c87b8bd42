//! "Usage" (`/usage?month=YYYY-MM`): what the tenant's VMs cost this month (or another one):
//! the total to date, the forecast and the current burn, a daily chart, the breakdowns per
//! instance, GPU model and user, the budget (tenant admins set it) and prepaid credit, and the
//! invoices; every tenant role reads it. The invoice itself is `invoice.rs`.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use portal_types::Role;
use portal_types::billing::{BudgetStatus, CostLine, MoneyFormat, UsageSummary};
use portal_types::views::Me;

use super::charts::BarChart;
use crate::api::{BudgetSet as SetBudget, usage_summary};
use crate::form::{FormAction, PostForm};

#[component]
pub fn UsagePage() -> impl IntoView {
    super::guarded(|_| true, |me| view! { <Usage me /> }.into_any())
}

#[component]
fn Usage(me: Me) -> impl IntoView {
    let query = use_query_map();
    let month = move || query.with(|q| q.get("month")).filter(|m| !m.is_empty());
    let budget = FormAction::<SetBudget>::new();
    // Fetched again after a budget is saved only: a refusal leaves the form as typed.
    let saves = RwSignal::new(0u64);
    Effect::new(move |_| {
        if let Some(Ok(())) = budget.value().get() {
            saves.update(|n| *n += 1);
        }
    });
    let summary = crate::json::resource(move || (month(), saves.get()), |(m, _)| usage_summary(m));
    let can_budget = me.provider_admin || me.role == Role::TenantAdmin;
    view! {
        <main class="dashboard usage">
            <Transition fallback=|| view! { <p class="loading">"Loading usage…"</p> }>
                {move || Suspend::new(async move {
                    match summary.await {
                        Ok(s) => view! { <Summary s budget can_budget /> }.into_any(),
                        Err(e) => view! { <p class="error" data-testid="usage-error">{e.to_string()}</p> }.into_any(),
                    }
                })}
            </Transition>
        </main>
    }
}

#[component]
fn Summary(s: UsageSummary, budget: FormAction<SetBudget>, can_budget: bool) -> impl IntoView {
    let f = s.format.clone();
    let days: Vec<(String, i64)> = s.days.iter().map(|d| (d.day.clone(), d.cents)).collect();
    let chart_label = format!(
        "Cost per day in {}, at most {} a day",
        s.month,
        f.cents(days.iter().map(|d| d.1).max().unwrap_or(0))
    );
    view! {
        <section class="panel">
            <div class="subbar">
                <h2 data-testid="usage-title">"Usage of " {s.tenant_name.clone()} " in " {s.month.clone()}
                    {s.current.then_some(view! { <span class="badge">"to date"</span> })}
                </h2>
                <MonthPicker base="/usage" months=s.months.clone() selected=s.month.clone() />
            </div>
            <div class="stats">
                <div class="stat"><span class="value" data-testid="usage-total">{f.cents(s.total_cents)}</span>
                    <span class="label">{if s.current { "month to date" } else { "month total" }}</span></div>
                {s.current.then(|| view! {
                    <div class="stat"><span class="value" data-testid="usage-forecast">{f.cents(s.forecast_cents)}</span>
                        <span class="label">"forecast for the month"</span></div>
                    <div class="stat"><span class="value" data-testid="usage-burn">{f.price(s.burn_micros_per_hour, "/h")}</span>
                        <span class="label">"running now"</span></div>
                })}
                {s.credit_cents.map(|c| view! {
                    <div class="stat"><span class="value" class:over={c <= 0} data-testid="usage-credit">{f.cents(c)}</span>
                        <span class="label">"prepaid credit left"</span></div>
                })}
            </div>
        </section>
        <section class="panel">
            <h2>"Cost per day (UTC)"</h2>
            <BarChart label=chart_label bars=days format=f.clone() />
        </section>
        <div class="breakdowns">
            <Breakdown title="Per instance" testid="by-instance" lines=s.by_instance.clone() format=f.clone() />
            <Breakdown title="Per GPU model" testid="by-gpu-model" lines=s.by_gpu_model.clone() format=f.clone() />
            <Breakdown title="Per user" testid="by-user" lines=s.by_user.clone() format=f.clone() />
        </div>
        <Budget status=s.budget.clone() format=f.clone() budget can_budget />
        <section class="panel" data-testid="invoices">
            <h2>"Invoices"</h2>
            {if s.months.is_empty() {
                view! { <p class="muted">"No usage yet, so no invoices."</p> }.into_any()
            } else {
                view! {
                    <ul class="invoice-list">
                        {s.months.iter().map(|m| {
                            let draft = s.current && *m == s.month;
                            view! {
                                <li><a href=format!("/usage/invoices/{m}") data-testid="invoice-link" data-month=m.clone()>{m.clone()}</a>
                                    {draft.then_some(view! { <span class="badge">"draft"</span> })}</li>
                            }
                        }).collect_view()}
                    </ul>
                }.into_any()
            }}
        </section>
    }
}

/// Links to the months with usage, the one shown marked.
#[component]
pub(crate) fn MonthPicker(
    base: &'static str,
    months: Vec<String>,
    selected: String,
) -> impl IntoView {
    let mut months = months;
    if !months.contains(&selected) {
        months.insert(0, selected.clone());
    }
    view! {
        <nav class="months" aria-label="Month" data-testid="month-picker">
            {months.into_iter().map(|m| {
                let active = m == selected;
                let href = format!("{base}?month={m}");
                view! { <a href=href class:active=active aria-current=active.then_some("page")>{m}</a> }
            }).collect_view()}
        </nav>
    }
}

/// A breakdown table: label, time, amount.
#[component]
pub(crate) fn Breakdown(
    title: &'static str,
    testid: &'static str,
    lines: Vec<CostLine>,
    format: MoneyFormat,
) -> impl IntoView {
    let empty = lines.is_empty();
    view! {
        <section class="panel" data-testid=testid>
            <h2>{title}</h2>
            {if empty {
                view! { <p class="muted">"Nothing this month."</p> }.into_any()
            } else {
                view! {
                    <table class="instances money">
                        <thead><tr><th></th><th class="num">"Hours"</th><th class="num">"Seconds"</th><th class="num">"Amount"</th></tr></thead>
                        <tbody>
                            {lines.into_iter().map(|l| view! {
                                <tr data-testid="cost-row" data-name=l.label.clone() data-seconds=l.seconds>
                                    <td class="name">{l.label.clone()}</td>
                                    <td class="num" data-testid="cost-hours">{format.hours(l.seconds)}</td>
                                    <td class="num" data-testid="cost-seconds">{format.integer(l.seconds)}</td>
                                    <td class="num" data-testid="cost-amount">{format.cents(l.cents)}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </section>
    }
}

/// The budget: how much of it the month used, the alerts raised, and (tenant admins) the
/// form that sets or clears it; the server's sentence appears under the form.
#[component]
fn Budget(
    status: Option<BudgetStatus>,
    format: MoneyFormat,
    budget: FormAction<SetBudget>,
    can_budget: bool,
) -> impl IntoView {
    let refused = move || budget.value().get().and_then(|r| r.err()).map(|e| e.to_string());
    let saved = move || matches!(budget.value().get(), Some(Ok(())));
    let current = status.as_ref().map(|b| format.decimal_micros(b.monthly_cents * 10_000));
    view! {
        <section class="panel" data-testid="budget">
            <h2>"Monthly budget"</h2>
            {match status {
                None => view! { <p class="muted" data-testid="budget-none">"No budget set."</p> }.into_any(),
                Some(b) => {
                    let width = b.used_percent.clamp(0, 100);
                    let (warn, over) = (b.used_percent >= 80, b.used_percent >= 100);
                    let alerts = if b.alerts.is_empty() {
                        "none yet".to_owned()
                    } else {
                        b.alerts.iter().map(|a| format!("{a} %")).collect::<Vec<_>>().join(", ")
                    };
                    view! {
                        <div class="meter budget-meter" data-testid="budget-status" data-percent=b.used_percent>
                            <span class="meter-label">{format.cents(b.monthly_cents)}</span>
                            <span class="meter-bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow=width>
                                <span class="meter-fill" class:warn=warn class:over=over
                                    style=format!("width: {width}%")></span>
                            </span>
                            <span class="meter-value" data-testid="budget-used">{format!("{} % used", b.used_percent)}</span>
                        </div>
                        <p class="muted" data-testid="budget-alerts">"Alerts raised this month: " {alerts}</p>
                    }.into_any()
                }
            }}
            {can_budget.then(|| view! {
                <PostForm action=budget attr:class="launch" attr:data-testid="budget-form">
                    <label>"Budget per month"
                        <input type="text" name="set[monthly]" inputmode="decimal" placeholder="1500.00 (empty: none)"
                            value=current.clone().unwrap_or_default() data-testid="budget-input" />
                    </label>
                    <button type="submit" class="primary" data-testid="budget-submit">"Set budget"</button>
                </PostForm>
                <Show when=move || refused().is_some()>
                    <p class="error" role="alert" data-testid="budget-error">{refused}</p>
                </Show>
                <Show when=saved>
                    <p class="muted" data-testid="budget-saved">"Saved."</p>
                </Show>
            })}
        </section>
    }
}
