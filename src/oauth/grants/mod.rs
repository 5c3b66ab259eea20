//! One file per grant type.

pub mod client_credentials;
pub mod code;
pub mod federated;
