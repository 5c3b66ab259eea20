//! agentidp: an identity provider for software agents.
//!
//! Module map: `model` (identifiers, secrets, clock) <- `storage` (one interface, SQLite and
//! PostgreSQL) and `ephemeral` (replay markers, invalidation; database or Redis) <- `keys`
//! (envelope encryption, signing keys) <- `tenancy` (organizations, agents, access) <- `tokens`
//! (JWT minting and validation) <- `oauth` / `oidc` (the protocols) <- `http` (the edge) <- `app`.
//! The domain modules never import axum or sqlx.

pub mod admin_error;
pub mod app;
pub mod config;
pub mod did;
pub mod ephemeral;
pub mod federation;
pub mod fetch;
pub mod http;
pub mod idp;
pub mod keys;
pub mod model;
pub mod oauth;
pub mod oidc;
pub mod remote;
pub mod storage;
pub mod telemetry;
pub mod tenancy;
pub mod tokens;
