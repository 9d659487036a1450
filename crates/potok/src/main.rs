//! `potok`: the broker (`potok server`) and the command-line tools.

mod allocator;
mod server;
mod tools;

#[global_allocator]
static GLOBAL: allocator::Allocator = allocator::Allocator;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "potok",
    version,
    about = "Potok: a Kafka-compatible event-streaming platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a broker (broker and metadata controller in one process).
    Server(server::ServerArgs),
    #[command(flatten)]
    Tool(tools::ToolCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(args) => server::run(args),
        Command::Tool(cmd) => tools::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("potok: {}", one_line(&err));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, leaving out a cause whose text the
/// message before it already includes.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
