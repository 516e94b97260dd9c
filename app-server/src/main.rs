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
    /// Create a staff (or any-role) account.
    CreateUser {
        /// cx or admin (rider also works).
        #[arg(long)]
        role: String,
        #[arg(long)]
        email: String,
        #[arg(long, env = "HEXRIDE_PASSWORD")]
        password: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "000000000")]
        phone: String,
    },
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
                    password,
                    name,
                    phone,
                },
        } => {
            let role: Role = role.parse().map_err(anyhow::Error::msg)?;
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
