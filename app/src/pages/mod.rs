pub mod account;
pub mod admin;
pub mod dashboard;
pub mod identity;
pub mod login;
pub mod tenancy;
pub mod topology;
