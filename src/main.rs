//! The `agentidp` command: parse, set up logging, dispatch.

use std::io::Write;
use std::process::ExitCode;

use agentidp::app::{App, Opening, admin_token_cli, rotate_keys_cli};
use agentidp::config::{AdminTokenCommand, Cli, Command, KeysCommand};

fn main() -> ExitCode {
    // An invalid value from an `AGENTIDP_*` variable is reported under the variable's name.
    let cli = Cli::parse_with_env_names();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("agentidp: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(settings) => {
                agentidp::telemetry::init_logging(&settings.log_format)
                    .map_err(anyhow::Error::msg)?;
                let startup = App::build(settings).await?;
                if let Some(token) = startup.new_bootstrap_token {
                    // Standard output, outside the log stream (logs go to stderr), exactly once.
                    let mut out = std::io::stdout().lock();
                    writeln!(
                        out,
                        "Bootstrap admin token (shown once, store it now): {}",
                        token.expose()
                    )
                    .and_then(|()| out.flush())
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "could not print the new bootstrap token ({e}); restart with \
                             AGENTIDP_BOOTSTRAP_TOKEN set to a token of your choice"
                        )
                    })?;
                }
                startup.app.run_until_stopped(shutdown_signal()).await
            }
            Command::Migrate(settings) => {
                agentidp::telemetry::init_logging(&settings.log_format)
                    .map_err(anyhow::Error::msg)?;
                agentidp::app::check_settings(&settings)?;
                agentidp::app::open_database_for(&settings, Opening::Migrate).await?;
                tracing::info!("migrations applied");
                Ok(())
            }
            Command::Keys {
                command: KeysCommand::Rotate { org, settings },
            } => {
                agentidp::telemetry::init_logging(&settings.log_format)
                    .map_err(anyhow::Error::msg)?;
                agentidp::app::check_settings(&settings)?;
                for (slug, keys) in rotate_keys_cli(&settings, org.as_deref()).await? {
                    println!("{slug}: {}", keys.join(", "));
                }
                Ok(())
            }
            Command::AdminToken { command } => {
                let settings = match &command {
                    AdminTokenCommand::Create { settings, .. }
                    | AdminTokenCommand::List { settings }
                    | AdminTokenCommand::Revoke { settings, .. } => settings,
                };
                agentidp::telemetry::init_logging(&settings.log_format)
                    .map_err(anyhow::Error::msg)?;
                agentidp::app::check_settings(settings)?;
                println!("{}", admin_token_cli(&command).await?);
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agentidp: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
