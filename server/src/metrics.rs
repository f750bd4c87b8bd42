//! Operations: Prometheus metrics at `/metrics`, liveness at `/livez` and readiness at
//! `/readyz`.
//!
//! The recorder is installed once per process, here; the control plane only records (its
//! `metrics` macros are no-ops where no recorder is installed, as in its tests). Counters
//! and histograms are recorded where things happen: requests by the [`track`] middleware
//! (labelled with the route's template, never the raw path, so the label set stays
//! bounded), saga steps and outcomes by the saga executor and its log, placements by the
//! claim task. Gauges of the database's state (agents by link, instances by state,
//! unfinished sagas) are read at scrape time with a few grouped queries under a deadline.
//!
//! `/metrics` needs no credentials unless `--metrics-token` (`PORTAL_METRICS_TOKEN`) is set;
//! operators otherwise keep it off the public path at their reverse proxy.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use portal_controller::Controller;
use portal_types::views::InstanceState;
use subtle::ConstantTimeEq;
use tokio::sync::watch;

/// How long `/readyz` and a scrape wait for the database.
const DATABASE_DEADLINE: Duration = Duration::from_secs(2);

/// How often histograms are compacted (the exporter leaves this to its user).
const UPKEEP: Duration = Duration::from_secs(5);

/// Request latencies: from a cached static file to a slow page (the render deadline is 10 s).
const HTTP_BUCKETS: [f64; 12] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Placements: queued, decided and committed, usually milliseconds; seconds under a burst.
const PLACEMENT_BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// The process's recorder (installed at most once: it is global).
static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder (the first call; later calls return the same handle)
/// and starts its upkeep. Must run inside the runtime.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("portal_http_request_duration_seconds".to_owned()),
            &HTTP_BUCKETS,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("portal_placement_duration_seconds".to_owned()),
                &PLACEMENT_BUCKETS,
            )
        })
        .and_then(|b| b.install_recorder())
        .map_err(|e| anyhow!("cannot start the metrics recorder: {e}"))?;
    describe();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// The `# HELP` lines.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "portal_http_requests_total",
        "HTTP requests answered, by method, route template and status"
    );
    describe_histogram!(
        "portal_http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request (until its headers; a stream's body is not counted)"
    );
    describe_gauge!("portal_http_requests_in_flight", "HTTP requests being answered");
    describe_counter!("portal_saga_steps_total", "Saga node events recorded, by saga and event");
    describe_counter!("portal_sagas_total", "Sagas ended on this replica, by saga and result");
    describe_gauge!("portal_sagas_running", "Sagas this replica runs");
    describe_gauge!("portal_sagas_unfinished", "Sagas not done, of every replica (database)");
    describe_counter!(
        "portal_placements_total",
        "Launches decided by the claim task: placed, refused_capacity, refused (quota, name, \
         input) or error"
    );
    describe_histogram!(
        "portal_placement_duration_seconds",
        Unit::Seconds,
        "Time from a launch being queued to its claim being decided and committed"
    );
    describe_gauge!("portal_placement_queue_depth", "Launches waiting for the claim task");
    describe_gauge!("portal_agents", "Agents by kind and link as last recorded (database)");
    describe_gauge!("portal_instances", "Instances by state (database)");
    describe_gauge!(
        "portal_metrics_database_ok",
        "1 if the last scrape read the database's gauges in time, else 0 (they keep old values)"
    );
}

/// What the operations routes need.
#[derive(Clone)]
struct Ops {
    handle: PrometheusHandle,
    /// `/metrics` needs `Authorization: Bearer <token>` when set.
    token: Option<Arc<str>>,
    controller: Arc<Controller>,
    stopping: watch::Receiver<bool>,
    /// One scrape reads the database at a time; a concurrent one renders what is there.
    refreshing: Arc<tokio::sync::Mutex<()>>,
}

/// `/metrics`, `/livez` and `/readyz`, to merge into the portal's router. Installs the
/// recorder.
pub fn routes<S>(
    controller: Arc<Controller>,
    token: Option<String>,
    stopping: watch::Receiver<bool>,
) -> anyhow::Result<Router<S>>
where
    S: Clone + Send + Sync + 'static,
{
    let ops = Ops {
        handle: install()?,
        token: token.filter(|t| !t.is_empty()).map(Arc::from),
        controller,
        stopping,
        refreshing: Arc::default(),
    };
    Ok(Router::new()
        .route("/metrics", get(scrape))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(ops))
}

/// Ready: not shutting down, and the database answers a trivial query in time.
async fn readyz(State(ops): State<Ops>) -> (StatusCode, &'static str) {
    if *ops.stopping.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    }
    match tokio::time::timeout(DATABASE_DEADLINE, ops.controller.datastore().ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ok\n"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "not ready: the database query failed");
            (StatusCode::SERVICE_UNAVAILABLE, "the database query failed\n")
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "the database did not answer within 2 s\n"),
    }
}

async fn scrape(State(ops): State<Ops>, headers: HeaderMap) -> Response {
    if let Some(token) = &ops.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or_default();
        if !bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "Send the metrics token as Authorization: Bearer <token>.\n",
            )
                .into_response();
        }
    }
    if let Ok(_only_one) = ops.refreshing.try_lock() {
        refresh_database_gauges(&ops.controller).await;
    }
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"))],
        ops.handle.render(),
    )
        .into_response()
}

/// Sets the gauges read from the database; on an error or past the deadline they keep
/// their previous values and `portal_metrics_database_ok` says so.
async fn refresh_database_gauges(controller: &Controller) {
    let read = tokio::time::timeout(DATABASE_DEADLINE, controller.datastore().operations_counts());
    let counts = match read.await {
        Ok(Ok(counts)) => counts,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "metrics: cannot read the database's gauges");
            metrics::gauge!("portal_metrics_database_ok").set(0.0);
            return;
        }
        Err(_) => {
            tracing::warn!("metrics: the database's gauges took longer than 2 s");
            metrics::gauge!("portal_metrics_database_ok").set(0.0);
            return;
        }
    };
    metrics::gauge!("portal_metrics_database_ok").set(1.0);
    metrics::gauge!("portal_sagas_unfinished").set(counts.unfinished_sagas as f64);
    // Every known state, so that one with no instances left reads 0, not its last count.
    for state in InstanceState::ALL {
        let n: u64 =
            counts.instances.iter().filter(|(s, _)| s == state.as_str()).map(|(_, n)| n).sum();
        metrics::gauge!("portal_instances", "state" => state.as_str()).set(n as f64);
    }
    for kind in ["host", "dpu", "switch"] {
        for (connected, link) in [(true, "connected"), (false, "unreachable")] {
            let n: u64 = counts
                .agents
                .iter()
                .filter(|(k, c, _)| *k == kind && *c == connected)
                .map(|(_, _, n)| n)
                .sum();
            metrics::gauge!("portal_agents", "kind" => kind, "link" => link).set(n as f64);
        }
    }
}

/// Counts requests in flight; decremented however the request ends (also when dropped).
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        metrics::gauge!("portal_http_requests_in_flight").increment(1.0);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!("portal_http_requests_in_flight").decrement(1.0);
    }
}

/// Middleware: counts every request and times it, by method and route template (a page's
/// or server function's route as registered; `unmatched` for static files and 404s).
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(req.method());
    let _in_flight = InFlight::enter();
    let started = Instant::now();
    let response = next.run(req).await;
    let elapsed = started.elapsed().as_secs_f64();
    let status = response.status().as_u16().to_string();
    metrics::histogram!(
        "portal_http_request_duration_seconds",
        "method" => method,
        "route" => route.clone(),
    )
    .record(elapsed);
    metrics::counter!(
        "portal_http_requests_total",
        "method" => method,
        "route" => route,
        "status" => status,
    )
    .increment(1);
    response
}

/// The standard methods by name; anything else is one label value (bounded cardinality).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
