//! `potok`: the broker (`potok server`) and the command-line tools.

mod allocator;
mod server;
mod tools;

#[global_allocator]
static GLOBAL: allocator::Allocator = allocator::Allocator;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "potok", version, about = "Potok: a Kafka-compatible event-streaming platform")]
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
            eprintln!("potok: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
