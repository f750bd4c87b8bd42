//! Request-path logic, one file per resource: validate, decide, call the datastore and the
//! agents, audit, publish events. No SQL here: every query is a `DataStore` method.

pub(crate) mod audit;
pub(crate) mod catalog;
pub(crate) mod fleet;
pub(crate) mod quotas;
mod tenants;
mod tokens;
mod topology;
mod users;
