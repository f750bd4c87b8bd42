//! The running portal protects itself: bounded request bodies, security headers on every
//! response (pages with a Content-Security-Policy carrying their script nonce), `Secure`
//! cookies and HSTS behind an https public URL, and a shutdown that ends within seconds even
//! with a request stuck in flight.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PASSWORD: &str = "protections test password";

struct Portal {
    child: Child,
    addr: String,
}

impl Drop for Portal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A site root with an (empty) bundle: pages render on the server without it.
fn site_root(test: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("portal-prot-site-{test}-{}", std::process::id()));
    std::fs::create_dir_all(root.join("pkg")).unwrap();
    std::fs::write(root.join("pkg/portal_bg.wasm"), b"").unwrap();
    root
}

fn start(test: &str, extra: &[&str]) -> Portal {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let data = std::env::temp_dir().join(format!("portal-prot-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let child = Command::new(env!("CARGO_BIN_EXE_portal-server"))
        .args([
            "--listen",
            &addr,
            "--data-dir",
            data.to_str().unwrap(),
            "--sim-scalable-units",
            "1",
        ])
        .arg("--site-root")
        .arg(site_root(test))
        .args(extra)
        .env("PORTAL_ADMIN_PASSWORD", PASSWORD)
        .env("PORTAL_LOG", "warn")
        .env_remove("PORTAL_AGENTS_FILE")
        .env_remove("PORTAL_DATABASE_URL")
        .stdout(Stdio::null())
        .spawn()
        .expect("portal-server starts");
    let portal = Portal { child, addr };
    let deadline = Instant::now() + Duration::from_secs(60);
    while request(&portal, "GET /healthz HTTP/1.1\r\n\r\n").is_none() {
        assert!(Instant::now() < deadline, "the portal did not come up");
        std::thread::sleep(Duration::from_millis(200));
    }
    portal
}

/// Sends `head` (request line and headers; Host and Connection are added) and an optional
/// body, returns the whole response as text.
fn request(portal: &Portal, head: &str) -> Option<String> {
    send(portal, head, b"")
}

fn send(portal: &Portal, head: &str, body: &[u8]) -> Option<String> {
    let mut s = TcpStream::connect(&portal.addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    let (line, rest) = head.split_once("\r\n")?;
    let text = format!("{line}\r\nHost: {}\r\nConnection: close\r\n{rest}", portal.addr);
    s.write_all(text.as_bytes()).ok()?;
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    (!out.is_empty()).then(|| String::from_utf8_lossy(&out).into_owned())
}

/// POSTs a form to `path` with extra header lines (each ending in CRLF).
fn post_form(portal: &Portal, path: &str, headers: &str, body: &[u8]) -> Option<String> {
    let head = format!(
        "POST {path} HTTP/1.1\r\n{headers}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    send(portal, &head, body)
}

fn admin_form() -> String {
    format!("username=admin&password={}", PASSWORD.replace(' ', "+"))
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = response.split("\r\n\r\n").next()?;
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn bodies_are_bounded_and_every_response_has_security_headers() {
    let portal = start("limits", &[]);
    // A body over the limit is refused before it is read, announced or not.
    let big = vec![b'a'; 1 << 20];
    let announced = post_form(&portal, "/api/fn/login", "", &big).unwrap();
    assert!(announced.starts_with("HTTP/1.1 413"), "{announced}");
    let mut chunked = format!("{:x}\r\n", big.len()).into_bytes();
    chunked.extend_from_slice(&big);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let streamed = send(
        &portal,
        "POST /api/fn/login HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n",
        &chunked,
    )
    .unwrap();
    assert!(streamed.starts_with("HTTP/1.1 413"), "{streamed}");

    let health = request(&portal, "GET /healthz HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(header(&health, "x-content-type-options"), Some("nosniff"));
    assert_eq!(header(&health, "x-frame-options"), Some("DENY"));
    assert!(header(&health, "content-security-policy").unwrap().contains("frame-ancestors 'none'"));
    assert_eq!(header(&health, "strict-transport-security"), None, "no HSTS over plain http");

    // A page allows exactly its own inline scripts, by nonce, and cannot be framed.
    let page = request(&portal, "GET /login HTTP/1.1\r\n\r\n").unwrap();
    let csp = header(&page, "content-security-policy").expect("a page has a CSP");
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("'wasm-unsafe-eval'"), "{csp}");
    let nonce = csp.split("'nonce-").nth(1).and_then(|n| n.split('\'').next()).expect("a nonce");
    assert!(page.contains(&format!("nonce=\"{nonce}\"")), "the page's scripts carry the nonce");
}

#[test]
fn behind_an_https_public_url_cookies_are_secure_and_hsts_is_sent() {
    let portal = start("https", &["--public-url", "https://gpu.example.test"]);
    let signed_in = post_form(&portal, "/api/fn/login", "", admin_form().as_bytes()).unwrap();
    let cookie = header(&signed_in, "set-cookie").expect("a session cookie");
    assert!(cookie.contains("Secure") && cookie.contains("HttpOnly"), "{cookie}");
    assert!(header(&signed_in, "strict-transport-security").is_some());
}

#[test]
fn shutdown_ends_within_seconds_even_with_a_request_stuck() {
    let mut portal = start("shutdown", &[]);
    // A request whose body never arrives keeps its connection busy.
    let mut stuck = TcpStream::connect(&portal.addr).unwrap();
    write!(
        stuck,
        "POST /api/fn/login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nusername=",
        portal.addr
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let asked = Instant::now();
    let status = Command::new("kill").args(["-TERM", &portal.child.id().to_string()]).status();
    assert!(status.unwrap().success());
    let deadline = asked + Duration::from_secs(10);
    loop {
        if let Some(status) = portal.child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "still running 10 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(stuck);
}

#[test]
fn anonymous_sign_in_starts_are_bounded_and_their_sessions_short_lived() {
    let portal = start("sso-starts", &[]);
    let mut refused = 0;
    for i in 0..25 {
        let r = request(&portal, "GET /auth/oidc/no-such-provider/login HTTP/1.1\r\n\r\n").unwrap();
        if r.starts_with("HTTP/1.1 429") {
            refused += 1;
            continue;
        }
        assert!(r.starts_with("HTTP/1.1 302"), "start {i}: {r}");
        // The refusal to show is kept in a session that lives minutes, not hours.
        let cookie = header(&r, "set-cookie").expect("a session for the refusal");
        let max_age: i64 = cookie
            .split(';')
            .find_map(|p| p.trim().strip_prefix("Max-Age="))
            .expect("a Max-Age")
            .parse()
            .unwrap();
        assert!(max_age <= 600, "{cookie}");
    }
    assert_eq!(refused, 5, "20 starts a minute per address");
}

/// Signs `admin` in; returns the session cookie.
fn sign_in_admin(portal: &Portal) -> String {
    let r = post_form(portal, "/api/fn/login", "", admin_form().as_bytes()).unwrap();
    header(&r, "set-cookie").expect("signed in").split(';').next().unwrap().to_owned()
}

/// The audit log's addresses of failed sign-ins of `user` after one sent with the header
/// `X-Forwarded-For: 203.0.113.7`.
fn audited_address(portal: &Portal, user: &str) -> String {
    let guess = format!("username={user}&password=wrong");
    post_form(portal, "/api/fn/login", "X-Forwarded-For: 203.0.113.7\r\n", guess.as_bytes())
        .unwrap();
    let cookie = sign_in_admin(portal);
    let r = post_form(portal, "/api/fn/audit_list", &format!("Cookie: {cookie}\r\n"), b"").unwrap();
    let page: serde_json::Value =
        serde_json::from_str(r.split("\r\n\r\n").nth(1).unwrap_or_default()).expect("JSON");
    let entry = page["items"]
        .as_array()
        .expect("a page of entries")
        .iter()
        .find(|e| e["actor"] == user)
        .expect("the failed sign-in is audited");
    entry["client"].as_str().unwrap().to_owned()
}

#[test]
fn x_forwarded_for_is_believed_only_from_trusted_proxies() {
    let direct = start("xff-direct", &[]);
    assert_eq!(audited_address(&direct, "mallory"), "127.0.0.1");
    drop(direct);
    let proxied = start("xff-proxy", &["--trusted-proxies", "127.0.0.0/8"]);
    assert_eq!(audited_address(&proxied, "mallory"), "203.0.113.7");
}
