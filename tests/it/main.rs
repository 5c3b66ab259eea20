//! One integration-test binary (one link), a module per feature. Every test starts its own real
//! server on a free port over its own database, on every configured backend.

mod support;

mod admin_api;
mod api_keys;
mod attacks;
mod auth_hardening;
mod caches;
mod clients;
mod connections;
mod core_flow;
mod delegation;
mod did;
mod enrollment;
mod federation;
mod first_hour;
mod fuzz;
mod invites;
mod keys;
mod leader;
mod lifecycle;
mod limits;
mod mail;
mod metrics;
mod oidc_client;
mod openapi;
mod policy;
mod private_key_jwt;
mod registration;
mod rls;
mod roles;
mod scale_out;
mod schemas;
mod signin;
mod startup;
mod state;
mod storage;
mod users;
