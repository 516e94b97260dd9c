//! `app-server [--config FILE] [serve | migrate | admin create-user …]`.

use anyhow::Context;
use clap::{Parser, Subcommand};

use app_server::config::Config;
use app_server::runtime::Runtime;
use app_server::{server, telemetry};
use application::members::SignUp;
use core_domain::member::Role;

#[derive(Parser)]
#[command(name = "app-server", version, about = "hexride: rider platform server")]
struct Cli {
    /// An extra TOML file layered over the built-in defaults (env `APP__…` still wins).
    #[arg(long, global = true, env = "APP_CONFIG")]
    config: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP and run the workers (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Administrative tasks.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create a staff (or any-role) account. The password never goes on the command line
    /// (where `ps` and shell history would show it): it is asked for at the terminal, or read
    /// from `--password-file`, from standard input with `--password-stdin`, or from
    /// `HEXRIDE_PASSWORD`.
    CreateUser {
        /// cx or admin (rider also works).
        #[arg(long)]
        role: String,
        #[arg(long)]
        email: String,
        /// Read the password from the first line of this file.
        #[arg(long, conflicts_with = "password_stdin")]
        password_file: Option<std::path::PathBuf>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "000000000")]
        phone: String,
    },
}

/// The new account's password: from `file`'s first line, from standard input's, from
/// `HEXRIDE_PASSWORD`, or asked twice at the terminal (not echoed).
fn read_password(file: Option<&std::path::Path>, from_stdin: bool) -> anyhow::Result<String> {
    use std::io::{BufRead as _, IsTerminal as _};
    let first_line = |text: &str| text.lines().next().unwrap_or_default().to_owned();
    if let Some(file) = file {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        return Ok(first_line(&text));
    }
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        return Ok(first_line(&line));
    }
    if let Ok(password) = std::env::var("HEXRIDE_PASSWORD") {
        return Ok(password);
    }
    anyhow::ensure!(
        std::io::stdin().is_terminal(),
        "no password: give --password-file, --password-stdin or HEXRIDE_PASSWORD, or run at a terminal"
    );
    let password = rpassword::prompt_password("Password: ").context("reading the password")?;
    let again = rpassword::prompt_password("Password again: ").context("reading the password")?;
    anyhow::ensure!(password == again, "the two passwords differ");
    Ok(password)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut config = Config::load(cli.config.as_deref()).context("loading configuration")?;
    telemetry::init(&config.log.format, &config.log.level);
    let command = cli.command.unwrap_or(Command::Serve);
    if !matches!(command, Command::Serve) {
        // One-off commands run no relay or consumers: their events wait in the outbox for a
        // server, so they need no broker (and do not wait for one that is down).
        config.kafka.brokers.clear();
    }
    match command {
        Command::Serve => {
            let running = server::start(config).await?;
            server::termination_signal().await;
            running.shutdown().await;
        }
        Command::Migrate => {
            config.database.migrate_on_start = true;
            let runtime = Runtime::build(config).await?;
            runtime.close().await;
            tracing::info!("migrations applied");
        }
        Command::Admin {
            command:
                AdminCommand::CreateUser {
                    role,
                    email,
                    password_file,
                    password_stdin,
                    name,
                    phone,
                },
        } => {
            let role: Role = role.parse().map_err(anyhow::Error::msg)?;
            let password = read_password(password_file.as_deref(), password_stdin)?;
            let runtime = Runtime::build(config).await?;
            let member = runtime
                .services
                .members
                .create_account(
                    SignUp {
                        email,
                        password,
                        name,
                        phone,
                    },
                    role,
                )
                .await
                .context("creating the account")?;
            runtime.close().await;
            println!(
                "{}",
                serde_json::json!({ "id": member.id, "email": member.email, "role": member.role })
            );
        }
    }
    Ok(())
}
