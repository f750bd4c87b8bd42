//! SSH public keys: every role adds, lists and deletes its own; every refusal is a sentence;
//! nobody else (same tenant or another) sees, deletes or launches with them; the key text of a
//! refused private key is stored and audited nowhere.

mod common;

use std::sync::Arc;

use base64::Engine;
use common::*;
use portal_controller::authz::Actor;
use portal_controller::datastore::entity::ssh_key;
use portal_controller::{Controller, ControllerConfig};
use portal_types::Error;
use portal_types::ids::{GenericUuid, SshKeyUuid};
use portal_types::params::{MAX_SSH_KEYS, SshKeyCreate};
use sea_orm::{EntityTrait, PaginatorTrait};

/// Made with `ssh-keygen -t ed25519 -C me@laptop`; `ssh-keygen -lf` prints [`ED25519_FP`].
const ED25519: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINr5+JuxHZ1k1KxLAVt+KOg4bewHCmfYQkAnMlk57Fg0 me@laptop";
const ED25519_FP: &str = "SHA256:YXbAs8XmqC/XcELGmMavrRPtxyvfyV0wmL9ADMOrK/s";
const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBGABKFK7mgKA56ko8F4gHV/ZkPk03gLEsFiCcn29rjIApIMVC/ii4hQGgB5UfiPkCE8c8BwmbVJlw4z681SC3ks= e2e@ecdsa";
const ECDSA_FP: &str = "SHA256:ylSlZEkIUhacTnNznpXAYrqGJSy9LYkwl7B6s5yFjsE";
const RSA_2048: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDofSGbbskyT7nFooaT4UyhOCcBQOdO4hsE5jxBkvV64psdiX+rNp73QXPVLC/QOzmgKZ00YovC1XMFrybZeSfSr9A5x9RDWqdtH0YgT2hsk5Bm7KyxZMW8CFBWb8vexzGgSsWidg3LL1pva5HTwPY40yEILsiQzyV+GS/CwceZQNlhK5p1FXvmJYMoakRDDUopsd9Vrfzpn/OcITkjxeU+Uk467fqPpT7dWkd9AijFqqG1zjDlck0FGQL7NS4DOl1cuwz4jh8EYF0CuPgGgEa+ErVHBmkeguaDBn2gpXn9IBHN4wk4IoL9ojnN9NOxD99wLummH2hGt80jP6gL2h7p big";
const RSA_2048_FP: &str = "SHA256:wTyU5rNDV5+RksaRxeApyLufxEEgOX+D8aV5guWoEgY";
const RSA_1024: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDaLnVztUfM7b3nXSO95o+pHmJ7VAug7qgRvgcGicn9klOU/vA7SkXolbUUYxoOVIdDF9U7kxzWgtch35O/mbMOAUj+H2yVsfZicYq5prOxJcrr/1oRYugAdwEwWjDcGZpLuhhBrGtY1A9shH9dhdnioIYr74ihLcDUhsfJQrBHzw== small";
const DSA: &str = "ssh-dss AAAAB3NzaC1kc3MAAACBAOusqvMk0oyIAPBW1YtUBy34QdUn6EWvcxVJWu7YIJ20jZpSszhPAELFw/F9w8EGAi08tgnRK0lvhsRqJNH8YhzjqsMOqAQX5smAucj8JG70kV7P0ye7vGIFxkLmjNFyZh+OY+ru31KvJWP4MuSJWlXzHq/4R1V1pCn0RHL/r8W5AAAAFQDiXe+k4n9jhe31Ko9S+KMTjzgNRQ== old";
/// The shape of a private key pasted by mistake (the body is not a real key).
const PRIVATE: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\nQyNTUxOQAAACDa+fibsR2dZNSsSwFbfijoOG3sBwpn2EJAJzJZOexYNAAAAJhSECRETCRETS\n-----END OPENSSH PRIVATE KEY-----\n";

fn key(name: &str, public_key: &str) -> SshKeyCreate {
    SshKeyCreate { name: name.into(), public_key: public_key.into() }
}

/// A well-formed ed25519 public key line for `seed` (the 32 bytes are not checked as a
/// curve point, so any make a distinct key).
fn synthetic_ed25519(seed: u8) -> String {
    let mut wire = Vec::new();
    for part in [&b"ssh-ed25519"[..], &[seed; 32][..]] {
        wire.extend_from_slice(&(part.len() as u32).to_be_bytes());
        wire.extend_from_slice(part);
    }
    format!("ssh-ed25519 {}", base64::engine::general_purpose::STANDARD.encode(wire))
}

/// The control plane on `url` (no fleet: keys need none) and its provider admin.
async fn open(url: &str) -> (Arc<Controller>, Actor) {
    let config = ControllerConfig {
        admin_password: Some(PASSWORD.to_owned()),
        ..ControllerConfig::new(url)
    };
    let ctl = Controller::open(&config).await.expect("controller opens");
    let user = ctl.login("admin", PASSWORD, None).await.expect("admin signs in");
    let admin = ctl.actor(user).await.unwrap().expect("admin actor");
    (ctl, admin)
}

fn message(e: Error) -> (u16, String) {
    (e.status_code(), e.to_string())
}

async fn keys_are_their_owners_alone(url: &str) {
    let (ctl, admin) = open(url).await;
    let acme = ctl.tenant_create(&op(&admin), "acme").await.unwrap();
    let viewer = member(&ctl, &admin, acme.id, "vera", "viewer").await;
    let neighbour = member(&ctl, &admin, acme.id, "ned", "member").await;
    let vera = &op(&viewer);

    // A viewer adds keys of every accepted type; fingerprints are OpenSSH's.
    let ed = ctl.ssh_key_create(vera, &key(" laptop ", &format!("{ED25519}\n"))).await.unwrap();
    assert_eq!(
        (ed.name.as_str(), ed.algorithm.as_str(), ed.fingerprint.as_str(), ed.comment.as_str()),
        ("laptop", "ssh-ed25519", ED25519_FP, "me@laptop")
    );
    let ec = ctl.ssh_key_create(vera, &key("yubikey-ish", ECDSA)).await.unwrap();
    assert_eq!((ec.algorithm.as_str(), ec.fingerprint.as_str()), ("ecdsa-sha2-nistp256", ECDSA_FP));
    let rsa = ctl.ssh_key_create(vera, &key("old desktop", RSA_2048)).await.unwrap();
    assert_eq!(rsa.fingerprint, RSA_2048_FP);
    let listed = ctl.ssh_key_list(vera).await.unwrap();
    assert_eq!(
        listed.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(),
        ["laptop", "yubikey-ish", "old desktop"]
    );

    // Every refusal is one sentence saying what to do, and stores nothing.
    let refusals = [
        (key("x", "hello world"), 400, "not an OpenSSH public key"),
        (key("x", "ssh-ed25519 AAAA"), 400, "not an OpenSSH public key"),
        (key("x", PRIVATE), 400, "private key"),
        (key("x", DSA), 400, "DSA keys"),
        (key("x", RSA_1024), 400, "1024 bits"),
        (key("", ED25519), 400, "1 to 64 characters"),
        (key(&"n".repeat(65), ED25519), 400, "1 to 64 characters"),
        (key("x", &format!("ssh-rsa {}", "A".repeat(17_000))), 400, "16 KiB"),
        (key("laptop", &synthetic_ed25519(1)), 409, "already have a key named \"laptop\""),
        (key("again", ED25519), 409, "already added this key, as \"laptop\""),
    ];
    for (create, status, says) in refusals {
        let (code, text) = message(ctl.ssh_key_create(vera, &create).await.unwrap_err());
        assert_eq!(code, status, "{text}");
        assert!(text.contains(says), "{text:?} should say {says:?}");
        assert!(!text.contains("b3BlbnNzaC1rZXkt"), "a refusal never quotes the key: {text}");
    }
    assert_eq!(ctl.ssh_key_list(vera).await.unwrap().len(), 3);

    // Nobody else sees, deletes or launches with Vera's keys: not her neighbour in acme, not
    // the provider admin in the default tenant.
    for other in [&neighbour, &admin] {
        assert!(ctl.ssh_key_list(&op(other)).await.unwrap().is_empty());
        assert_eq!(ctl.ssh_key_delete(&op(other), ed.id).await.unwrap_err().status_code(), 404);
        let (code, text) =
            message(ctl.testing_ssh_keys_for_launch(&op(other), &[ed.id]).await.unwrap_err());
        assert_eq!(code, 400);
        assert!(text.contains("is not one of your keys"), "{text}");
    }
    // Her neighbour may use the same key and the same name for their own entry.
    ctl.ssh_key_create(&op(&neighbour), &key("laptop", ED25519)).await.unwrap();

    // The launch path gets Vera's own keys in the order asked, and refuses an unknown id.
    let lines = ctl.testing_ssh_keys_for_launch(vera, &[rsa.id, ed.id, rsa.id]).await.unwrap();
    assert_eq!(
        lines,
        [
            ("old desktop".to_owned(), RSA_2048.to_owned()),
            ("laptop".to_owned(), ED25519.to_owned())
        ]
    );
    let unknown = SshKeyUuid::from_untyped_uuid(uuid::Uuid::new_v4());
    assert_eq!(
        ctl.testing_ssh_keys_for_launch(vera, &[ed.id, unknown]).await.unwrap_err().status_code(),
        400
    );

    // Delete: gone from the list, a second delete is not found.
    ctl.ssh_key_delete(vera, ed.id).await.unwrap();
    assert_eq!(ctl.ssh_key_delete(vera, ed.id).await.unwrap_err().status_code(), 404);
    assert_eq!(ctl.ssh_key_list(vera).await.unwrap().len(), 2);
    assert_eq!(
        ctl.testing_ssh_keys_for_launch(vera, &[ed.id]).await.unwrap_err().status_code(),
        400
    );

    // At most MAX_SSH_KEYS per user; the next is refused with a sentence.
    for seed in 0..(MAX_SSH_KEYS - 2) {
        ctl.ssh_key_create(vera, &key(&format!("k{seed}"), &synthetic_ed25519(seed as u8)))
            .await
            .unwrap();
    }
    let (code, text) = message(
        ctl.ssh_key_create(vera, &key("one-more", &synthetic_ed25519(200))).await.unwrap_err(),
    );
    assert_eq!(code, 409);
    assert!(text.contains("delete one you no longer use"), "{text}");

    // The audit log has each add and delete with the fingerprint, never key material.
    let entries =
        ctl.audit_list(&op(&admin), Some("ssh_key."), None, &newest()).await.unwrap().items;
    assert!(entries.iter().any(|e| e.action == "ssh_key.create"
        && e.object_id == format!("laptop ({ED25519_FP})")
        && e.outcome == "ok"));
    assert!(entries.iter().any(|e| e.action == "ssh_key.delete"
        && e.object_id.contains(ED25519_FP)
        && e.outcome == "ok"));
    for e in &entries {
        let all = format!("{e:?}");
        assert!(!all.contains("PRIVATE") && !all.contains("b3BlbnNzaC1rZXkt"), "{all}");
        assert!(!all.contains("AAAAC3NzaC1lZDI1NTE5"), "no public key text either: {all}");
    }

    // Deleting the tenant names its members' keys, and takes them along.
    let impact = ctl.tenant_deletion_preview(&op(&admin), acme.id).await.unwrap();
    assert_eq!(impact.ssh_keys, MAX_SSH_KEYS as u64 + 1, "vera's and ned's");
    ctl.tenant_delete(&op(&admin), acme.id, "acme").await.unwrap();
    let left = ssh_key::Entity::find().count(ctl.datastore().connection()).await.unwrap();
    assert_eq!(left, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_their_owners_alone_on_sqlite() {
    keys_are_their_owners_alone(&sqlite_url("keys")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_their_owners_alone_on_postgres() {
    let Some(url) = postgres_url("keys").await else { return };
    keys_are_their_owners_alone(&url).await;
}

/// A key added with a stolen API token would open the user's VMs after the token is gone:
/// tokens list keys but cannot add or delete them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tokens_list_keys_but_cannot_add_or_delete_them() {
    let (ctl, admin) = open(&sqlite_url("keys-token")).await;
    let acme = ctl.tenant_create(&op(&admin), "acme").await.unwrap();
    let tess = member(&ctl, &admin, acme.id, "tess", "member").await;
    let added = ctl.ssh_key_create(&op(&tess), &key("laptop", ED25519)).await.unwrap();
    let made = ctl.api_token_create(&op(&tess), "ci", "member", 30).await.unwrap();
    let token = ctl.token_actor(&made.token, None).await.unwrap().expect("token acts");

    assert_eq!(ctl.ssh_key_list(&token).await.unwrap(), std::slice::from_ref(&added));
    let (code, text) =
        message(ctl.ssh_key_create(&token, &key("ci", &synthetic_ed25519(7))).await.unwrap_err());
    assert_eq!(code, 403);
    assert!(text.contains("SSH keys; sign in to the portal"), "{text}");
    assert_eq!(ctl.ssh_key_delete(&token, added.id).await.unwrap_err().status_code(), 403);
    assert_eq!(ctl.ssh_key_list(&op(&tess)).await.unwrap().len(), 1);
}
