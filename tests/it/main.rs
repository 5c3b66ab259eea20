//! One integration-test binary (one link), a module per feature. Every test starts its own real
//! server on a free port over its own database, on every configured backend.

mod support;

mod core_flow;
