//! Request-path logic, one file per resource: validate, decide, call the datastore and the
//! agents, audit, publish events. No SQL here: every query is a `DataStore` method.

pub(crate) mod audit;
pub(crate) mod billing;
pub(crate) mod catalog;
pub(crate) mod claims;
pub(crate) mod console;
pub(crate) mod fleet;
pub(crate) mod gpu_fabric;
pub(crate) mod images;
pub(crate) mod instances;
pub(crate) mod metering;
pub(crate) mod networking;
mod port_counters;
pub(crate) mod ports;
mod public_ips;
pub(crate) mod quotas;
pub(crate) mod removal;
pub(crate) mod scheduling;
mod sessions;
mod ssh_keys;
mod tenants;
mod tokens;
mod topology;
mod users;
