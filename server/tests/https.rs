//! The portal serves HTTPS itself with `--tls-cert` and `--tls-key`: pages and the API over
//! TLS, `Secure` cookies and HSTS, and a client that connects and never says hello holds up
//! nobody. The certificate is made with `openssl` for 127.0.0.1.

mod support;

use std::io::Write;
use std::time::Duration;

use support::Portal;

fn certificate(dir: &std::path::Path) -> (String, String) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
        .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        // A server certificate, not a CA: rustls refuses a CA as the server's certificate.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    (cert.to_str().unwrap().to_owned(), key.to_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_serves_https_with_its_own_certificate() {
    let dir = std::env::temp_dir().join(format!("portal-tls-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = certificate(&dir);
    let portal = Portal::start("https", &["--tls-cert", &cert, "--tls-key", &key]).await;
    let https = portal.url.clone();
    assert!(https.starts_with("https://"));

    // A client that opens connections and never starts the handshake.
    let addr = https.trim_start_matches("https://").to_owned();
    let silent: Vec<_> = (0..20).map(|_| std::net::TcpStream::connect(&addr).unwrap()).collect();

    let pem = std::fs::read(&cert).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let page = client.get(format!("{https}/login")).send().await.expect("a page over TLS");
    assert_eq!(page.status().as_u16(), 200);
    let hsts = page.headers().get("strict-transport-security").expect("HSTS over https");
    assert!(hsts.to_str().unwrap().contains("max-age="));
    let login = client
        .post(format!("{https}/api/fn/login"))
        .form(&[("username", "admin"), ("password", support::PASSWORD)])
        .send()
        .await
        .unwrap();
    let cookie = login.headers().get("set-cookie").unwrap().to_str().unwrap().to_owned();
    assert!(cookie.contains("Secure"), "{cookie}");
    let api = client.get(format!("{https}/api/v1/openapi.json")).send().await.unwrap();
    assert_eq!(api.status().as_u16(), 200);

    // Plain HTTP on the TLS port is refused, not served and not left hanging.
    let mut plain = std::net::TcpStream::connect(&addr).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut plain, &mut answer);
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));
    drop(silent);
}
