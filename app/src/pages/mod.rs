pub mod admin;
pub mod dashboard;
pub mod login;
pub mod topology;
