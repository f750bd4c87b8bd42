//! Two portal replicas on one PostgreSQL database behind a real load balancer (HAProxy),
//! with a simulated datacenter both attach to: a session made through one works on the
//! other; launches split across both never oversubscribe a GPU; a browser stream on one
//! sees a launch made on the other; and a rolling restart (stop one, start it, then the
//! other) fails no request through the balancer and loses no saga.
//!
//! Needs `PORTAL_TEST_POSTGRES_URL` and `PORTAL_TEST_HAPROXY` (the haproxy binary), both
//! set by `.ci/test`; without them the test says so and passes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const PASSWORD: &str = "replicas test admin password";
/// 32 bytes, base64: replicas on one database share the key of its secrets.
const SECRET_KEY: &str = "cmVwbGljYXMtdGVzdC1rZXktMzItYnl0ZXMtbG9uZyE=";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One portal process; started again with the same data directory, it is the same replica.
struct Replica {
    child: Option<Child>,
    port: u16,
    args: Vec<String>,
}

impl Replica {
    fn spawn(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_portal-server"))
            .args(&self.args)
            .env("PORTAL_ADMIN_PASSWORD", PASSWORD)
            .env("PORTAL_SECRET_KEY", SECRET_KEY)
            .env("PORTAL_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("portal-server starts");
        self.child = Some(child);
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        let client = reqwest::Client::new();
        loop {
            let url = format!("http://127.0.0.1:{}/healthz", self.port);
            if client.get(url).send().await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(Instant::now() < deadline, "replica on port {} did not come up", self.port);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops it the way a service manager does (SIGTERM) and waits for it to exit.
    async fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        let pid = child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
        assert!(status.success(), "a graceful stop exits 0: {status}");
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct Balancer(Child);

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// HAProxy in front of the replicas: round robin, health-checked, and a request that finds
/// a replica gone is sent to the other one.
fn balancer(haproxy: &str, dir: &Path, port: u16, replicas: &[u16]) -> Balancer {
    let servers: String = replicas
        .iter()
        .enumerate()
        .map(|(i, p)| format!("  server r{i} 127.0.0.1:{p} check inter 200ms fall 1 rise 2\n"))
        .collect();
    let config = format!(
        "global\n  maxconn 256\n\
         defaults\n  mode http\n  timeout connect 2s\n  timeout client 60s\n  timeout server 60s\n\
         \x20 retries 3\n  option redispatch 1\n  retry-on conn-failure empty-response 503\n\
         frontend portal\n  bind 127.0.0.1:{port}\n  default_backend replicas\n\
         backend replicas\n  balance roundrobin\n  option httpchk GET /healthz\n{servers}"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config).unwrap();
    let check = Command::new(haproxy).arg("-c").arg("-f").arg(&path).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    Balancer(
        Command::new(haproxy)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy starts"),
    )
}

/// A fresh database for the test, made with psql.
fn database(admin_url: &str) -> String {
    let name = format!("portal_replicas_{}", std::process::id());
    let run = |sql: String| {
        let out = Command::new("psql")
            .args([admin_url, "-q", "-v", "ON_ERROR_STOP=1", "-c", &sql])
            .output()
            .expect("psql runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    run(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
    run(format!("CREATE DATABASE \"{name}\""));
    let base = admin_url.rsplit_once('/').unwrap().0;
    format!("{base}/{name}")
}

async fn signed_in(url: &str) -> reqwest::Client {
    let anonymous =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response = anonymous
        .post(format!("{url}/api/fn/login"))
        .form(&[("username", "admin"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    let cookie = response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("portal_session="))
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::COOKIE, cookie.parse().unwrap());
    reqwest::Client::builder().default_headers(headers).build().unwrap()
}

async fn call(client: &reqwest::Client, url: &str, name: &str, form: &[(&str, &str)]) -> Value {
    let response = client.post(format!("{url}/api/fn/{name}")).form(form).send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{name}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Launches one VM through the REST API at `url`; its id, or the error status.
async fn launch(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    name: &str,
    ty: &str,
) -> Result<String, u16> {
    let response = client
        .post(format!("{url}/api/v1/instances"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(json!({"name": name, "instance_type": ty}).to_string())
        .send()
        .await
        .map_err(|_| 0u16)?;
    let status = response.status().as_u16();
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap_or_default();
    match status {
        202 => Ok(body[0]["id"].as_str().unwrap().to_owned()),
        other => Err(other),
    }
}

async fn instances(client: &reqwest::Client, url: &str, token: &str) -> Vec<Value> {
    let response = client
        .get(format!("{url}/api/v1/instances?limit=1000"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    body["items"].as_array().unwrap().clone()
}

async fn wait_all(client: &reqwest::Client, url: &str, token: &str, want: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let all = instances(client, url, token).await;
        let done = all.iter().filter(|i| i["state"] == want).count();
        if done == count && all.len() == count {
            return;
        }
        let states: Vec<_> = all.iter().map(|i| i["state"].clone()).collect();
        assert!(Instant::now() < deadline, "not all {count} {want}: {states:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portal-replicas-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_behind_haproxy_share_sessions_capacity_events_and_survive_a_rolling_restart()
{
    let (Ok(admin_url), Ok(haproxy)) =
        (std::env::var("PORTAL_TEST_POSTGRES_URL"), std::env::var("PORTAL_TEST_HAPROXY"))
    else {
        eprintln!("PORTAL_TEST_POSTGRES_URL / PORTAL_TEST_HAPROXY are not set; skipping");
        return;
    };
    let db = database(&admin_url);
    let dir = temp("shared");

    // The datacenter both replicas attach to.
    let pki = agent_common::tls::PkiDir::new(dir.join("pki"));
    let options =
        sim_fleet::SimOptions { provision_delay: Duration::from_millis(400), ..Default::default() };
    let fleet = sim_fleet::SimFleet::start(&sim_fleet::Topology::hgx_h100(1), options, &pki)
        .await
        .expect("the simulated datacenter starts");
    let agents = dir.join("agents.toml");
    std::fs::write(&agents, toml::to_string(&fleet.agent_list()).unwrap()).unwrap();
    let site = dir.join("site");
    std::fs::create_dir_all(site.join("pkg")).unwrap();
    std::fs::write(site.join("pkg/portal_bg.wasm"), b"").unwrap();

    let mut replicas: Vec<Replica> = (0..2)
        .map(|i| {
            let port = free_port();
            let data = temp(&format!("r{i}"));
            let args = [
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--database-url",
                &db,
                "--agents-file",
                agents.to_str().unwrap(),
                "--pki-dir",
                pki_path(&dir).to_str().unwrap(),
                "--data-dir",
                data.to_str().unwrap(),
                "--site-root",
                site.to_str().unwrap(),
            ]
            .map(str::to_owned)
            .to_vec();
            Replica { child: None, port, args }
        })
        .collect();
    // The first creates the schema and the admin; the second finds them.
    for replica in &mut replicas {
        replica.spawn();
    }
    for replica in &replicas {
        replica.wait_ready().await;
    }
    let lb_port = free_port();
    let _lb = balancer(&haproxy, &dir, lb_port, &[replicas[0].port, replicas[1].port]);
    let lb = format!("http://127.0.0.1:{lb_port}");
    let direct: Vec<String> =
        replicas.iter().map(|r| format!("http://127.0.0.1:{}", r.port)).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{lb}/healthz")).await.is_err() {
        assert!(Instant::now() < deadline, "haproxy did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A session made through the balancer works on both replicas.
    let admin = signed_in(&lb).await;
    for url in &direct {
        let me = call(&admin, url, "get_me", &[]).await;
        assert_eq!(me["username"], "admin");
    }
    let me = call(&admin, &lb, "get_me", &[]).await;
    let tenant = me["tenant_id"].as_str().unwrap().to_owned();
    let types = call(&admin, &lb, "instance_type_list", &[]).await;
    let h100 = types.as_array().unwrap().iter().find(|t| t["name"] == "h100x8").unwrap();
    let gpus = format!("gpus:{}", h100["gpu_model"].as_str().unwrap());
    for resource in ["instances", "vcpus", "memory_gib", &gpus] {
        let form = [("tenant_id", tenant.as_str()), ("resource", resource), ("limit", "unlimited")];
        call(&admin, &lb, "quota_set", &form).await;
    }
    let token = call(
        &admin,
        &lb,
        "api_token_create",
        &[("name", "replicas"), ("role", "member"), ("days", "1")],
    )
    .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let client = reqwest::Client::new();

    // A browser stream on replica 1 sees a launch made on replica 0.
    let mut stream = client
        .get(format!("{}/api/v1/events", direct[1]))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    let crossing = launch(&client, &direct[0], &token, "crossing", "c8m32").await.unwrap();
    let mut seen = String::new();
    let until = Instant::now() + Duration::from_secs(20);
    while !seen.contains("crossing") {
        let left = until.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, stream.chunk()).await.expect("the event crosses");
        seen.push_str(&String::from_utf8_lossy(&chunk.unwrap().unwrap()));
    }
    drop(stream);
    let gone = client
        .delete(format!("{lb}/api/v1/instances/{crossing}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status().as_u16(), 202);
    wait_all(&client, &lb, &token, "Running", 0).await;

    // 48 eight-GPU launches split across both replicas at once, for 32 hosts of 8 GPUs:
    // exactly 32 are placed, and no GPU twice.
    let launches = (0..48).map(|i| {
        let (client, token, url) = (client.clone(), token.clone(), direct[i % 2].clone());
        async move { launch(&client, &url, &token, &format!("big-{i}"), "h100x8").await }
    });
    let results = futures::future::join_all(launches).await;
    let placed = results.iter().filter(|r| r.is_ok()).count();
    let refused: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(refused.iter().all(|s| **s == 507), "{refused:?}");
    assert_eq!(placed, 32, "{refused:?}");
    wait_all(&client, &lb, &token, "Running", 32).await;
    let mut hosts = std::collections::HashSet::new();
    for i in instances(&client, &lb, &token).await {
        if i["instance_type"] == "h100x8" {
            assert!(hosts.insert(i["host_name"].as_str().unwrap().to_owned()), "a host twice");
        }
    }
    assert_eq!(hosts.len(), 32);

    // Delete them all and, while the deletes run, restart the replicas one at a time with
    // requests flowing through the balancer: none fails, and every delete finishes.
    for i in instances(&client, &lb, &token).await {
        let id = i["id"].as_str().unwrap();
        let r = client
            .delete(format!("{lb}/api/v1/instances/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let traffic = {
        let (stop, ok, failed, lb, token) =
            (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed), lb.clone(), token.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                // Launches carry an idempotency key: the balancer may send one again.
                let request = if n % 5 == 0 {
                    client
                        .post(format!("{lb}/api/v1/instances"))
                        .header("content-type", "application/json")
                        .header("idempotency-key", format!("roll-{n}"))
                        .body(
                            json!({"name": format!("roll-{n}"), "instance_type": "c1m1"})
                                .to_string(),
                        )
                } else {
                    client.get(format!("{lb}/api/v1/instances"))
                };
                match request.bearer_auth(&token).timeout(Duration::from_secs(20)).send().await {
                    Ok(r) if r.status().as_u16() < 500 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        })
    };
    for replica in &mut replicas {
        replica.stop().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        replica.spawn();
        replica.wait_ready().await;
        // Until the balancer's health check has seen it back.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(ok > 50, "too little traffic to tell: {ok} answered, {failed} failed");
    assert_eq!(failed, 0, "{failed} of {} requests failed during the rolling restart", ok + failed);

    // No saga was lost: the deletes finished, the launches made meanwhile run.
    let rolled = instances(&client, &lb, &token).await.len();
    wait_all(&client, &lb, &token, "Running", rolled).await;
    let names: Vec<String> = instances(&client, &lb, &token)
        .await
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(names.iter().all(|n| n.starts_with("roll-")), "{names:?}");
    eprintln!("rolling restart: {ok} requests, 0 failed; {rolled} launches made meanwhile run");
    fleet.shutdown().await;
}

fn pki_path(dir: &Path) -> PathBuf {
    dir.join("pki")
}
