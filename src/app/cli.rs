//! `agentidp admin-token create|list|revoke`: platform admin tokens besides the bootstrap token,
//! made and revoked against the database directly (a running server reads the token's row on
//! every admin request, so a revocation holds at once on every instance).

use std::sync::Arc;

use super::startup::open_database;
use crate::config::{AdminTokenCommand, Settings};
use crate::model::{Clock, SystemClock, rfc3339};
use crate::tenancy::principals::{META_BOOTSTRAP, Principals};

/// Runs one `admin-token` command; what to print on standard output.
pub async fn admin_token_cli(cmd: &AdminTokenCommand) -> anyhow::Result<String> {
    let settings: &Settings = match cmd {
        AdminTokenCommand::Create { settings, .. }
        | AdminTokenCommand::List { settings }
        | AdminTokenCommand::Revoke { settings, .. } => settings,
    };
    let (stores, master) = open_database(settings).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let principals = Principals::new(
        stores.principals.clone(),
        stores.meta.clone(),
        Arc::new(master.digester()),
        // The CLI authenticates nobody.
        (0, Vec::new()),
        clock,
    );
    let err = |e: crate::admin_error::AdminError| anyhow::anyhow!("{e}");
    match cmd {
        AdminTokenCommand::Create { name, .. } => {
            let (rec, secret) = principals.create_admin_token(name).await.map_err(err)?;
            Ok(format!(
                "Platform admin token {} ({}), shown once, store it now:\n{}",
                rec.id,
                rec.name,
                secret.expose()
            ))
        }
        AdminTokenCommand::List { .. } => {
            let mut out = String::from("ID\tNAME\tCREATED\tLAST USED\tSTATUS\n");
            let bootstrap = stores.meta.get(META_BOOTSTRAP).await?;
            out.push_str(&format!(
                "bootstrap\t(bootstrap token)\t-\t-\t{}\n",
                match bootstrap.as_deref() {
                    Some(v) if !crate::tenancy::principals::is_retired(v) => "active",
                    _ => "retired",
                }
            ));
            for t in principals.admin_tokens().await.map_err(err)? {
                out.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\n",
                    t.id,
                    t.name,
                    rfc3339(t.created_at),
                    t.last_used_at.map_or_else(|| "never".into(), rfc3339),
                    t.revoked_at
                        .map_or_else(|| "active".into(), |r| format!("revoked {}", rfc3339(r)))
                ));
            }
            Ok(out.trim_end().to_owned())
        }
        AdminTokenCommand::Revoke { id, .. } => {
            principals
                .revoke_admin_token(id)
                .await
                .map_err(|e| match e {
                    crate::admin_error::AdminError::NotFound => {
                        anyhow::anyhow!("no active admin token {id:?}")
                    }
                    other => err(other),
                })?;
            Ok(if id == "bootstrap" {
                "bootstrap token retired (it stays retired across restarts; \
                 AGENTIDP_BOOTSTRAP_TOKEN brings one back)"
                    .to_owned()
            } else {
                format!("admin token {id} revoked")
            })
        }
    }
}
