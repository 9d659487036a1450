//! `potok server`: load the configuration, recover, and serve until Ctrl-C or
//! SIGTERM, then flush and mark the log dirs clean.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use broker::{Broker, Listeners, ServerConfig};

/// Arguments of `potok server`.
#[derive(clap::Args)]
pub(crate) struct ServerArgs {
    /// A Kafka-style server.properties file.
    config: Option<PathBuf>,
    /// Override one setting, `key=value` (repeatable).
    #[arg(long = "override", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

pub(crate) fn run(args: ServerArgs) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("POTOK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = ServerConfig::load(args.config.as_deref(), &args.overrides).context("config")?;
    tracing::info!(log_dirs = ?config.log_dirs, node_id = config.node_id, "starting potok");
    let inert = config.inert_security_settings();
    if !inert.is_empty() {
        tracing::warn!(
            settings = inert.join(","),
            "security settings have no effect: no listener uses SSL or SASL (not supported yet)"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listeners = Listeners::bind(&config).await?;
        let broker = Broker::open(config)?;
        broker.serve(listeners, shutdown_signal()).await?;
        tracing::info!("shutting down");
        broker.shutdown()?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch SIGTERM");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
