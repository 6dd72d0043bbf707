//! The `airlock` command line.
//!
//! * `airlock serve --config airlock.toml`: run the proxy.
//! * `airlock demo`: throwaway Postgres with sample PII data, airlock in front.
//! * `airlock passwd`: print a SCRAM verifier for an identity's secret.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use airlock::config::Config;

#[derive(Parser)]
#[command(
    name = "airlock",
    version,
    about = "A database wire-protocol firewall for AI agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Serve {
        /// The configuration file.
        #[arg(long, short, default_value = "airlock.toml", env = "AIRLOCK_CONFIG")]
        config: PathBuf,
    },
    /// Start a throwaway Postgres with sample data and airlock in front of it.
    Demo {
        /// Port for airlock's Postgres listener (0 picks a free one).
        #[arg(long, default_value_t = 6432)]
        port: u16,
        /// Start everything, print the connection details, then stop (for scripts).
        #[arg(long)]
        check: bool,
    },
    /// Print a SCRAM-SHA-256 verifier for an identity's `secret` key.
    Passwd {
        /// Read the password from standard input instead of prompting.
        #[arg(long)]
        stdin: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Serve { config } => serve(config),
        Command::Demo { port, check } => {
            runtime().and_then(|rt| rt.block_on(airlock::demo::run(port, check)))
        }
        Command::Passwd { stdin } => passwd(stdin),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("airlock: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AIRLOCK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn serve(path: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&path)?;
    runtime()?.block_on(airlock::server::run_until_signal(config))
}

fn passwd(from_stdin: bool) -> anyhow::Result<()> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        let first = rpassword::prompt_password("Secret: ")?;
        let again = rpassword::prompt_password("Again: ")?;
        anyhow::ensure!(first == again, "the two entries differ");
        first
    };
    anyhow::ensure!(!password.is_empty(), "empty secret");
    println!("{}", airlock_protocol::pg::scram::make_verifier(&password));
    Ok(())
}
