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
                // openraft narrates every vote and heartbeat at info.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
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
    raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listeners = Listeners::bind(&config).await?;
        // Recovery and the final flushes are blocking disk work: off the async workers.
        let broker = tokio::task::spawn_blocking(move || Broker::open(config)).await??;
        broker.serve(listeners, shutdown_signal()).await?;
        tracing::info!("shutting down");
        let closing = std::sync::Arc::clone(&broker);
        tokio::task::spawn_blocking(move || closing.shutdown()).await??;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Raises the soft limit on open files to the hard limit, as servers do (a
/// partition's active segment keeps up to three files open, every connection
/// one socket), and logs the limit in force once.
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let show = |v: Option<u64>| v.map_or_else(|| "unlimited".to_owned(), |v| v.to_string());
    if let (Some(soft), Some(hard)) = (limit.current, limit.maximum) {
        if soft < hard {
            let raised = Rlimit { current: Some(hard), maximum: Some(hard) };
            if let Err(e) = setrlimit(Resource::Nofile, raised) {
                tracing::warn!(soft, hard, error = %e, "cannot raise the open file limit to its hard limit");
            }
        }
    }
    let now = getrlimit(Resource::Nofile);
    tracing::info!(soft = %show(now.current), hard = %show(now.maximum), "open file limit (RLIMIT_NOFILE)");
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
