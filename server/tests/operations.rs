//! Operations on a running portal: `/metrics` (requests by route template, saga steps and
//! outcomes, placements, agents and instances gauges), `/livez`, `/readyz`, and the metrics
//! token.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{PASSWORD, Portal};

/// The value of the sample of `name` whose labels include all of `labels`; `None` if there
/// is none.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let rest = series.strip_prefix(name)?;
        if !(rest.is_empty() || rest.starts_with('{')) {
            return None;
        }
        labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
            .then(|| value.parse().ok())?
    })
}

/// The sum of every sample of `name` whose labels include all of `labels`.
fn total(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let rest = series.strip_prefix(name)?;
            let matches = (rest.is_empty() || rest.starts_with('{'))
                && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            matches.then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

async fn status(client: &reqwest::Client, url: &str) -> u16 {
    client.get(url).send().await.unwrap().status().as_u16()
}

async fn scrape(portal: &Portal, token: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new().get(format!("{}/metrics", portal.url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    if status == 200 {
        let kind = response.headers()[reqwest::header::CONTENT_TYPE].to_str().unwrap().to_owned();
        assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    }
    (status, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_sagas_and_placements_and_the_probes_answer() {
    let portal = Portal::start("operations", &[]).await;
    let anonymous = reqwest::Client::new();
    assert_eq!(status(&anonymous, &format!("{}/livez", portal.url)).await, 200);
    assert_eq!(status(&anonymous, &format!("{}/readyz", portal.url)).await, 200);
    assert_eq!(status(&anonymous, &format!("{}/healthz", portal.url)).await, 200);

    // A page, a server function, and a launch over REST until it runs.
    assert_eq!(status(&anonymous, &format!("{}/login", portal.url)).await, 200);
    let admin = portal.signed_in("admin", PASSWORD).await;
    portal.call(&admin, "get_me", &[]).await;
    let member = portal.admin_token("member").await;
    let launched = reqwest::Client::new()
        .post(format!("{}/api/v1/instances", portal.url))
        .bearer_auth(&member)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(json!({"name": "m1", "instance_type": "c8m32"}).to_string())
        .send()
        .await
        .unwrap();
    let launch_status = launched.status().as_u16();
    let body: Value = serde_json::from_str(&launched.text().await.unwrap()).unwrap_or_default();
    assert!((200..300).contains(&launch_status), "{launch_status} {body}");
    let id =
        body[0]["id"].as_str().unwrap_or_else(|| panic!("no instance id in {body}")).to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = reqwest::Client::new()
            .get(format!("{}/api/v1/instances/{id}", portal.url))
            .bearer_auth(&member)
            .send()
            .await
            .unwrap();
        let code = response.status().as_u16();
        let detail: Value =
            serde_json::from_str(&response.text().await.unwrap()).unwrap_or_default();
        if code == 200 && detail["instance"]["state"] == "Running" {
            break;
        }
        assert!(Instant::now() < deadline, "{id} never ran: {code} {detail}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status(&admin, &format!("{}/instances/{id}", portal.url)).await, 200);
    // Not a route: counted as unmatched, never by its path.
    assert_eq!(status(&anonymous, &format!("{}/no/such/{id}", portal.url)).await, 404);

    // The saga's outcome is counted once its task sees it end, just after the state change.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let (code, text) = scrape(&portal, None).await;
        assert_eq!(code, 200, "{text}");
        let ended = sample(
            &text,
            "portal_sagas_total",
            &[("saga", "instance_create"), ("result", "finished")],
        );
        if ended.is_some_and(|n| n >= 1.0) {
            break text;
        }
        assert!(Instant::now() < deadline, "the create saga never counted as finished:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let has = |name: &str, labels: &[(&str, &str)]| sample(&text, name, labels);

    // Requests by route template and status; never the raw path.
    let counted = |method: &str, route: &str, status: &str| {
        has(
            "portal_http_requests_total",
            &[("method", method), ("route", route), ("status", status)],
        )
        .unwrap_or(0.0)
    };
    assert!(counted("GET", "/login", "200") >= 1.0, "{text}");
    assert!(counted("POST", "/api/fn/get_me", "200") >= 1.0, "{text}");
    assert!(counted("GET", "/instances/{id}", "200") >= 1.0, "{text}");
    assert!(counted("GET", "/api/v1/instances/{id}", "200") >= 1.0, "{text}");
    assert!(counted("GET", "/livez", "200") >= 1.0, "{text}");
    assert!(counted("GET", "unmatched", "404") >= 1.0, "{text}");
    assert!(!text.contains(&id), "a raw path became a label:\n{text}");
    assert!(
        total(&text, "portal_http_request_duration_seconds_count", &[("route", "/login")]) >= 1.0,
        "{text}"
    );
    assert!(has("portal_http_requests_in_flight", &[]).is_some(), "{text}");

    // The launch's saga: its steps and its outcome.
    let steps = |event: &str| {
        has("portal_saga_steps_total", &[("saga", "instance_create"), ("event", event)])
            .unwrap_or(0.0)
    };
    assert!(steps("started") > 0.0 && steps("succeeded") > 0.0, "{text}");
    assert!(has("portal_sagas_running", &[]).is_some(), "{text}");
    assert!(has("portal_sagas_unfinished", &[]).is_some(), "{text}");

    // The placement.
    assert!(
        has("portal_placements_total", &[("result", "placed")]).unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    assert!(total(&text, "portal_placement_duration_seconds_count", &[]) >= 1.0, "{text}");

    // Gauges read at scrape time: every simulated host's agent connected, the one instance
    // running.
    let hosts = sim_fleet::Topology::hgx_h100(1).hosts().len() as f64;
    assert_eq!(
        has("portal_agents", &[("kind", "host"), ("link", "connected")]),
        Some(hosts),
        "{text}"
    );
    assert_eq!(has("portal_agents", &[("kind", "host"), ("link", "unreachable")]), Some(0.0));
    assert_eq!(has("portal_instances", &[("state", "running")]), Some(1.0), "{text}");
    assert_eq!(has("portal_metrics_database_ok", &[]), Some(1.0), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_token_is_required_when_set() {
    let portal = Portal::start("operations-token", &["--metrics-token", "s3cret-metrics"]).await;
    assert_eq!(scrape(&portal, None).await.0, 401);
    assert_eq!(scrape(&portal, Some("wrong")).await.0, 401);
    let (code, text) = scrape(&portal, Some("s3cret-metrics")).await;
    assert_eq!(code, 200);
    assert!(text.contains("portal_http_requests_total"), "{text}");
    // The probes stay open.
    let anonymous = reqwest::Client::new();
    assert_eq!(status(&anonymous, &format!("{}/livez", portal.url)).await, 200);
    assert_eq!(status(&anonymous, &format!("{}/readyz", portal.url)).await, 200);
}
