//! Bar charts drawn on the server as SVG: readable without JavaScript, a `<title>` on each
//! bar for its hover text, and an `aria-label` that says what the chart shows. Heights are
//! scaled with integer math; amounts are cents written with the reader's [`MoneyFormat`].

use leptos::prelude::*;
use portal_types::billing::MoneyFormat;

const WIDTH: i64 = 720;
const HEIGHT: i64 = 200;
/// Room for the axis labels: the amounts on the left, the bars' labels below.
const LEFT: i64 = 96;
const BOTTOM: i64 = 22;
const TOP: i64 = 8;

/// One bar per `(label, cents)` pair, e.g. one per day.
#[component]
pub fn BarChart(
    /// What the chart shows, for screen readers.
    label: String,
    bars: Vec<(String, i64)>,
    format: MoneyFormat,
) -> impl IntoView {
    let bars = bars.into_iter().map(|(l, v)| (l, vec![(String::new(), v)])).collect();
    view! { <StackedChart label bars series=Vec::new() format /> }
}

/// Bars of stacked segments: per bar, `(series name, cents)` in the order of `series` (a
/// series a bar lacks is zero). Each series has its own color (`seg-0` … `seg-5`) and a
/// legend entry below.
#[component]
pub fn StackedChart(
    label: String,
    bars: Vec<(String, Vec<(String, i64)>)>,
    series: Vec<String>,
    format: MoneyFormat,
) -> impl IntoView {
    let max = bars
        .iter()
        .map(|(_, segments)| segments.iter().map(|(_, v)| (*v).max(0)).sum::<i64>())
        .max()
        .unwrap_or(0);
    let plot_w = WIDTH - LEFT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    // Room for a month of days at least, so a month to date fills from the left.
    let slot = plot_w / (bars.len() as i64).max(28);
    // Three quarters of a bar's slot, but never wider than a day of a full month would be.
    let bar_w = (slot * 3 / 4).clamp(1, 16);
    // Label every bar while there is room, else every 7th (weeks of days).
    let every = if slot >= 14 { 1 } else { 7 };
    let color = |name: &str| {
        let i = series.iter().position(|s| s == name).unwrap_or(0);
        format!("seg seg-{}", i % 6)
    };
    let base = TOP + plot_h;
    let rects = bars
        .iter()
        .enumerate()
        .map(|(i, (bar_label, segments))| {
            let x = LEFT + i as i64 * slot + (slot - bar_w) / 2;
            let mut y = base;
            let total: i64 = segments.iter().map(|(_, v)| (*v).max(0)).sum();
            let parts = segments
                .iter()
                .filter(|(_, v)| *v > 0)
                .map(|(name, v)| {
                    let h = if max > 0 { (v * plot_h / max).max(1) } else { 0 };
                    y -= h;
                    let title = if name.is_empty() {
                        format!("{bar_label}: {}", format.cents(*v))
                    } else {
                        format!("{bar_label} · {name}: {}", format.cents(*v))
                    };
                    view! {
                        <rect class=color(name) x=x y=y width=bar_w height=h data-testid="chart-bar"
                            data-label=bar_label.clone() data-cents=*v>
                            <title>{title}</title>
                        </rect>
                    }
                })
                .collect_view();
            let tick = (i as i64 % every == 0).then(|| {
                let short = short_label(bar_label);
                view! {
                    <text class="tick" x=x + bar_w / 2 y=HEIGHT - 6 text-anchor="middle">{short}</text>
                }
            });
            let sum_title = format!("{bar_label}: {}", format.cents(total));
            view! { <g><title>{sum_title}</title>{parts}{tick}</g> }
        })
        .collect_view();
    let legend = (series.len() > 1).then(|| {
        view! {
            <p class="legend chart-legend">
                {series.iter().map(|s| view! { <span class=format!("swatch {}", color(s))></span>{s.clone()} }).collect_view()}
            </p>
        }
    });
    let max_label = format.cents(max);
    let mid_label = format.cents(max / 2);
    view! {
        <figure class="chart">
            <svg role="img" aria-label=label viewBox=format!("0 0 {WIDTH} {HEIGHT}") class="bars"
                preserveAspectRatio="xMinYMin meet" data-testid="bar-chart">
                <line class="axis" x1=LEFT y1=TOP x2=LEFT y2=base />
                <line class="axis" x1=LEFT y1=base x2=WIDTH y2=base />
                <line class="grid" x1=LEFT y1=TOP x2=WIDTH y2=TOP />
                <line class="grid" x1=LEFT y1=TOP + plot_h / 2 x2=WIDTH y2=TOP + plot_h / 2 />
                <text class="tick" x=LEFT - 6 y=TOP + 4 text-anchor="end" data-testid="chart-max">{max_label}</text>
                <text class="tick" x=LEFT - 6 y=TOP + plot_h / 2 + 4 text-anchor="end">{mid_label}</text>
                <text class="tick" x=LEFT - 6 y=base + 4 text-anchor="end">"0"</text>
                {rects}
            </svg>
            {legend}
        </figure>
    }
}

/// A day (`2026-12-03`) is labelled by its day of the month; anything else as it is.
fn short_label(label: &str) -> String {
    match label.rsplit_once('-') {
        Some((_, day)) if label.len() == 10 => day.to_owned(),
        _ => label.to_owned(),
    }
}
