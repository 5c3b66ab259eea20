//! OpenID Connect for agents: discovery (OIDC Discovery 1.0, RFC 8414) and `/agent-info`
//! (the agent's userinfo endpoint).

pub mod agent_info;
pub mod discovery;
