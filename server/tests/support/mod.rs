//! A running portal for tests that talk to it over HTTP: the real `portal-server` binary on
//! a free loopback port with a simulated datacenter and its own data directory, and API
//! tokens made the way a user makes them (signed in, on the account page's server function).

#![allow(dead_code)] // each test binary uses part of it

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "rest test admin password";

pub struct Portal {
    child: Child,
    pub url: String,
    data: PathBuf,
    /// Its standard error: the log.
    log: PathBuf,
}

impl Drop for Portal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data);
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- the portal's log, last lines first ---\n{}", tail.join("\n"));
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A site root with an (empty) bundle: pages render on the server without it.
fn site_root(test: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("portal-site-{test}-{}", std::process::id()));
    std::fs::create_dir_all(root.join("pkg")).unwrap();
    std::fs::write(root.join("pkg/portal_bg.wasm"), b"").unwrap();
    root
}

impl Portal {
    /// Starts the portal (`test` names its directories) and waits until it answers.
    pub async fn start(test: &str, extra: &[&str]) -> Portal {
        let data = std::env::temp_dir().join(format!("portal-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        Self::start_on(test, data, extra).await
    }

    /// Starts the portal on a data directory that may hold a database already (removed when
    /// the portal is dropped).
    pub async fn start_on(test: &str, data: PathBuf, extra: &[&str]) -> Portal {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::env::temp_dir().join(format!("portal-{test}-{}.log", std::process::id()));
        let child = Command::new(env!("CARGO_BIN_EXE_portal-server"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--sim-scalable-units", "1"])
            .arg("--data-dir")
            .arg(&data)
            .arg("--site-root")
            .arg(site_root(test))
            .args(extra)
            .env("PORTAL_ADMIN_PASSWORD", PASSWORD)
            .env("PORTAL_LOG", "info")
            .env_remove("PORTAL_AGENTS_FILE")
            .env_remove("PORTAL_DATABASE_URL")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("portal-server starts");
        let scheme = if extra.contains(&"--tls-cert") { "https" } else { "http" };
        let mut portal = Portal { child, url: format!("{scheme}://127.0.0.1:{port}"), data, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        // Only whether it answers: the certificate is the test's business.
        let client = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
        while client.get(format!("{}/healthz", portal.url)).send().await.is_err() {
            if let Ok(Some(status)) = portal.child.try_wait() {
                panic!("the portal exited while starting: {status}");
            }
            assert!(Instant::now() < deadline, "the portal did not come up");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        portal
    }

    pub fn data_dir(&self) -> &std::path::Path {
        &self.data
    }

    /// What it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A client carrying the session cookie of `username`.
    pub async fn signed_in(&self, username: &str, password: &str) -> reqwest::Client {
        let anonymous =
            reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let response = anonymous
            .post(format!("{}/api/fn/login", self.url))
            .form(&[("username", username), ("password", password)])
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
            .unwrap_or_else(|| panic!("{username} could not sign in: {}", response.status()))
            .to_owned();
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::COOKIE, cookie.parse().unwrap());
        reqwest::Client::builder()
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    /// Calls a server function with a form; the JSON answer.
    pub async fn call(
        &self,
        client: &reqwest::Client,
        name: &str,
        form: &[(&str, &str)],
    ) -> serde_json::Value {
        let response =
            client.post(format!("{}/api/fn/{name}", self.url)).form(form).send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{name}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
    }

    /// An API token of the admin (provider admin of the default tenant) with `role`.
    pub async fn admin_token(&self, role: &str) -> String {
        let admin = self.signed_in("admin", PASSWORD).await;
        self.token_of(&admin, role).await
    }

    /// An API token of whoever `client` is signed in as, with `role` in their tenant.
    pub async fn token_of(&self, client: &reqwest::Client, role: &str) -> String {
        let name = format!("test-{role}-{}", uuid_suffix());
        let made = self
            .call(client, "api_token_create", &[("name", &name), ("role", role), ("days", "1")])
            .await;
        made["token"].as_str().expect("the token is shown once").to_owned()
    }

    /// A user of the admin's tenant with `role`, signed in with their own password.
    pub async fn user(&self, username: &str, role: &str) -> reqwest::Client {
        let admin = self.signed_in("admin", PASSWORD).await;
        let me = self.call(&admin, "get_me", &[]).await;
        let tenant = me["tenant_id"].as_str().unwrap().to_owned();
        let invited = self
            .call(
                &admin,
                "user_invite",
                &[("tenant_id", &tenant), ("username", username), ("role", role)],
            )
            .await;
        let once = invited["one_time_password"].as_str().unwrap().to_owned();
        let user = self.signed_in(username, &once).await;
        let own = format!("{username} own password");
        self.call(&user, "password_change", &[("current", &once), ("new", &own), ("repeat", &own)])
            .await;
        self.signed_in(username, &own).await
    }
}

fn uuid_suffix() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    )
}
