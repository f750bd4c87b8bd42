//! `portal-server pki`: the agents' mutual TLS certificates for an agents file, made once on
//! the machine that keeps the CA key; existing ones are kept (see `agent_common::tls`).

use std::path::Path;

use agent_common::tls::{AgentName, PkiDir};
use anyhow::anyhow;

pub fn run(agents_file: &Path, pki_dir: &Path) -> anyhow::Result<()> {
    let endpoints = crate::startup::read_agents_file(agents_file)?;
    let names: Vec<AgentName<'_>> =
        endpoints.iter().map(|e| AgentName { kind: e.kind.label(), id: &e.id }).collect();
    let pki = PkiDir::new(pki_dir);
    let ensured = pki.ensure(&names, false).map_err(|e| anyhow!("{e}"))?;
    let ca = if ensured.ca_created { "created" } else { "kept" };
    println!(
        "{}: CA {ca}, {} certificates issued, {} kept.",
        pki.root().display(),
        ensured.issued,
        ensured.kept
    );
    println!("On each agent install ca.pem and agents/<kind>/<id>.pem and .key from there;");
    println!("the portal reads ca.pem and control-plane.pem/.key (pass --pki-dir if elsewhere).");
    let plain = endpoints.iter().filter(|e| !e.url.starts_with("https://")).count();
    if plain > 0 {
        println!(
            "Note: {plain} agents in {} have no https:// URL; agents serve only mutual TLS, so \
             the portal refuses them until their URLs start with https://.",
            agents_file.display()
        );
    }
    Ok(())
}
