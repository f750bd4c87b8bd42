//! `web-bench`: what a browser and a script see of a running portal, under load.
//!
//! Signs in as the admin, then sends `--requests` requests of each kind, `--concurrency` at a
//! time, and reports throughput and p50/p99 latency per kind: server-rendered pages (the
//! dashboard, `GET /`, and the admin page with the fleet map, `GET /admin`) and JSON API
//! calls (`POST /api/fn/instance_list`, `/api/fn/capacity`, `/api/fn/fleet_summary`).
//! Prints a line per kind, then one JSON line.
//!
//! Start the portal first (a release build: `cargo run --release -p portal-server -- …`),
//! then: `cargo run --release -p portal-server --bin web-bench -- [--url http://127.0.0.1:3000]
//! [--requests 4000] [--concurrency 32]` with `PORTAL_ADMIN_PASSWORD` set.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, COOKIE, HeaderMap, HeaderValue, SET_COOKIE};

struct Args {
    url: String,
    requests: usize,
    concurrency: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { url: "http://127.0.0.1:3000".into(), requests: 4000, concurrency: 32 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => args.url = value()?.trim_end_matches('/').to_owned(),
            "--requests" => {
                args.requests = value()?.parse().map_err(|e| format!("--requests: {e}"))?
            }
            "--concurrency" => {
                args.concurrency = value()?.parse().map_err(|e| format!("--concurrency: {e}"))?
            }
            other => {
                return Err(format!("unknown argument {other}; see the doc comment for usage"));
            }
        }
    }
    if args.requests == 0 || args.concurrency == 0 {
        return Err("--requests and --concurrency must be at least 1".into());
    }
    Ok(args)
}

/// A client that sends the session cookie of a signed-in admin.
async fn signed_in(url: &str, password: &str) -> Result<reqwest::Client, String> {
    let anonymous = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let response = anonymous
        .post(format!("{url}/api/fn/login"))
        .form(&[("username", "admin"), ("password", password)])
        .send()
        .await
        .map_err(|e| format!("cannot reach the portal at {url}: {e}; start it first"))?;
    if !response.status().is_success() && !response.status().is_redirection() {
        return Err(format!(
            "sign-in refused ({}); check PORTAL_ADMIN_PASSWORD",
            response.status()
        ));
    }
    let cookie = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("portal_session="))
        .and_then(|v| v.split(';').next())
        .ok_or("the sign-in set no session cookie")?
        .to_owned();
    let mut headers = HeaderMap::new();
    headers.insert(COOKIE, HeaderValue::from_str(&cookie).map_err(|e| e.to_string())?);
    reqwest::Client::builder()
        .default_headers(headers)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())
}

struct Figures {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    failed: usize,
}

/// How to make one request of a kind.
type Request = Arc<dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync>;

async fn run(
    client: &reqwest::Client,
    requests: usize,
    concurrency: usize,
    request: &Request,
) -> Figures {
    let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let started = Instant::now();
    let tasks: Vec<_> = (0..requests)
        .map(|_| {
            let (client, request, semaphore) =
                (client.clone(), Arc::clone(request), Arc::clone(&semaphore));
            tokio::spawn(async move {
                let _permit = semaphore.acquire_owned().await.ok()?;
                let t = Instant::now();
                let response = request(&client).send().await.ok()?;
                let ok = response.status().is_success();
                response.bytes().await.ok()?;
                ok.then(|| t.elapsed())
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = Vec::with_capacity(requests);
    let mut failed = 0;
    for t in tasks {
        match t.await.ok().flatten() {
            Some(l) => latencies.push(l),
            None => failed += 1,
        }
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Figures {
        per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        failed,
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let Ok(password) = std::env::var("PORTAL_ADMIN_PASSWORD") else {
        eprintln!("error: set PORTAL_ADMIN_PASSWORD to the admin's password");
        return std::process::ExitCode::from(2);
    };
    let client = match signed_in(&args.url, &password).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let url = args.url.clone();
    // Server functions without arguments take an empty form.
    let api = |path: &'static str| -> Request {
        let url = url.clone();
        Arc::new(move |c: &reqwest::Client| {
            c.post(format!("{url}{path}"))
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body("")
        })
    };
    let page = |path: &'static str| -> Request {
        let url = url.clone();
        Arc::new(move |c: &reqwest::Client| c.get(format!("{url}{path}")))
    };
    let kinds = [
        ("ssr_dashboard", page("/")),
        ("ssr_admin", page("/admin")),
        ("api_instance_list", api("/api/fn/instance_list")),
        ("api_capacity", api("/api/fn/capacity")),
        ("api_fleet_summary", api("/api/fn/fleet_summary")),
    ];
    let mut results = Vec::new();
    for (name, request) in kinds {
        // Warm up connections and caches before measuring.
        run(&client, args.concurrency * 4, args.concurrency, &request).await;
        let f = run(&client, args.requests, args.concurrency, &request).await;
        println!(
            "{name}: {} requests, {} at a time: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {} failed",
            args.requests, args.concurrency, f.per_sec, f.p50_ms, f.p99_ms, f.failed
        );
        results.push(format!(
            "\"{name}\":{{\"per_sec\":{:.1},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"failed\":{}}}",
            f.per_sec, f.p50_ms, f.p99_ms, f.failed
        ));
    }
    println!(
        "{{\"benchmark\":\"web\",\"requests\":{},\"concurrency\":{},{}}}",
        args.requests,
        args.concurrency,
        results.join(",")
    );
    std::process::ExitCode::SUCCESS
}
