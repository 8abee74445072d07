//! The commands of the `emailin` binary, as library functions so tests run
//! exactly what an operator runs.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::app::{App, open_store};
use crate::config::Settings;
use crate::domain::{DirectoryHandle, EmailAddress};
use crate::domain::{Envelope, InboundMessage, Source};
use crate::ingest::{Intake, Policy, Processor, mbox};
use crate::store::{Role, Store};

pub mod mail_accounts;

#[derive(Debug, Parser)]
#[command(
    name = "emailin",
    version,
    about = "Turns email into sales and support pipeline records"
)]
pub struct Cli {
    /// TOML configuration file (defaults are built in; EMAILIN__SECTION__KEY overrides).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the SMTP listener, the processor and the HTTP API.
    Serve,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Validate the configuration and print it (secrets redacted), then exit.
    CheckConfig,
    /// Exit 0 when the running service answers /readyz with 200.
    Healthcheck,
    /// Run stored messages through processing again (default: the failed ones).
    Replay {
        /// Only messages with this status (pending, processed, ignored, failed).
        #[arg(long)]
        status: Option<String>,
        /// Only this inbound message.
        #[arg(long)]
        id: Option<Uuid>,
    },
    /// Manage API bearer tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage the people who log in to the web UI.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Apply the retention window now.
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
    /// OAuth 2.0 sign-in for `auth = "oauth2"` accounts.
    Oauth {
        #[command(subcommand)]
        command: OAuthCommand,
    },
    /// Check a sending domain: SPF lets the relay send, the DKIM key is
    /// published, DMARC aligns; prints what to publish. Exits 1 when not verified.
    CheckDomain { domain: String },
    /// Send a test message through the relay to ALIAS's team address (its
    /// first `also`, or --to) and wait for it to arrive through the alias or
    /// an IMAP account, printing the headers that routed it. The service
    /// must be running to receive it. Exits 1 when it does not arrive in time.
    CheckForwarding {
        alias: String,
        /// The team address to send to (default: the alias's first `also`).
        #[arg(long)]
        to: Option<String>,
        /// Seconds to wait for it.
        #[arg(long, default_value_t = 120)]
        wait: u64,
    },
    /// Store and process .eml or mbox files as if they had been mailed to ALIAS.
    Ingest {
        /// Files: one message each, or mbox files with many.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The alias they are delivered to.
        #[arg(long)]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum OAuthCommand {
    /// Sign in once with the device code flow (prints a URL and a code) and
    /// keep the refresh token, sealed, in the database.
    Login {
        /// An `[[imap]]` account's name, or `outbound` for the relay.
        #[arg(long)]
        account: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (the only time it is shown).
    Create {
        #[arg(long)]
        name: String,
        /// admin (everything) or member (read and work records).
        #[arg(long, default_value = "member")]
        role: String,
    },
    /// List tokens (never the tokens themselves).
    List,
    /// Revoke a token by name or id.
    Revoke { name_or_id: String },
}

#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Remove the raw bytes past `[retention] raw_days` now, printing progress.
    Run,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user (or give an existing one a password and role).
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "")]
        name: String,
        /// admin (everything) or member (read and work records).
        #[arg(long, default_value = "member")]
        role: String,
        /// Read the password from standard input (one line) so they can log in.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's password from standard input (ends their sessions).
    SetPassword {
        #[arg(long)]
        email: String,
    },
    /// Print a one-time link for a user to set their password.
    Invite {
        #[arg(long)]
        email: String,
    },
    /// End every web session of a user.
    SignOut {
        #[arg(long)]
        email: String,
    },
    /// List users.
    List,
}

/// Runs a parsed command line.
///
/// # Errors
/// Whatever the command fails with, with context for the operator.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.config.as_deref()).context("invalid configuration")?;
    crate::telemetry::init(settings.log.format);
    match cli.command {
        Command::Serve => serve(settings).await,
        Command::Migrate => {
            open_store(&settings).await?;
            println!("database is up to date");
            Ok(())
        }
        Command::CheckConfig => {
            let mut shown = settings.clone();
            shown.database.url = crate::app::redact_url(&shown.database.url);
            println!("{}", serde_json::to_string_pretty(&shown)?);
            println!("configuration is valid");
            Ok(())
        }
        Command::Healthcheck => healthcheck(settings.http.listen).await,
        Command::Replay { status, id } => {
            let status = match (status, id) {
                (None, None) => Some("failed".to_string()),
                (s, _) => s,
            };
            let store = open_store(&settings).await?;
            let reset = store.reset_for_replay(status.as_deref(), id).await?;
            let processed = process_pending(&store, &settings).await?;
            println!("replayed {reset} message(s); processed {processed}");
            print_counts(store.as_ref()).await
        }
        Command::Token { command } => token(&settings, command).await,
        Command::CheckDomain { domain } => {
            mail_accounts::check_domain(&settings, &domain, &mut std::io::stdout()).await
        }
        Command::CheckForwarding { alias, to, wait } => {
            let store = open_store(&settings).await?;
            let check = mail_accounts::ForwardingCheck {
                alias: &alias,
                to: to.as_deref(),
                wait: Duration::from_secs(wait),
            };
            mail_accounts::check_forwarding(&settings, store, check, &mut std::io::stdout()).await
        }
        Command::Oauth {
            command: OAuthCommand::Login { account },
        } => {
            let store = open_store(&settings).await?;
            mail_accounts::oauth_login(&settings, store, &account, &mut std::io::stdout()).await
        }
        Command::User { command } => {
            let store = open_store(&settings).await?;
            let base = settings.http.public_url.trim().trim_end_matches('/');
            user(store.as_ref(), base, command, &mut tokio::io::stdin()).await
        }
        Command::Retention {
            command: RetentionCommand::Run,
        } => {
            let store = open_store(&settings).await?;
            retention_run(store.as_ref(), &settings.retention, &mut std::io::stdout()).await
        }
        Command::Ingest { files, to } => {
            let store = open_store(&settings).await?;
            let report = ingest_files(&store, &settings, &files, &to).await?;
            println!(
                "stored {} message(s) from {} file(s)",
                report.stored.len(),
                files.len()
            );
            print_counts(store.as_ref()).await
        }
    }
}

/// `emailin retention run`: what the background task does, at once, with a
/// progress line per batch.
///
/// # Errors
/// No `[retention] raw_days`, or the store's.
pub async fn retention_run(
    store: &dyn Store,
    settings: &crate::config::RetentionSettings,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    let Some(days) = settings.raw_days else {
        anyhow::bail!("[retention] raw_days is not set: raw bytes are kept for ever");
    };
    writeln!(
        out,
        "removing the raw bytes of processed messages older than {days} days"
    )?;
    let stop = tokio_util::sync::CancellationToken::new();
    let total = crate::retention::run_once(store, settings, &stop, |t| {
        // A progress line is worth nothing once the terminal is gone.
        let _ = writeln!(out, "… {} messages, {} bytes so far", t.messages, t.bytes);
        let _ = out.flush();
    })
    .await?;
    writeln!(
        out,
        "removed the raw bytes of {} messages ({} bytes); their records stay",
        total.messages, total.bytes
    )?;
    Ok(())
}

async fn token(settings: &Settings, command: TokenCommand) -> anyhow::Result<()> {
    let store = open_store(settings).await?;
    match command {
        TokenCommand::Create { name, role } => {
            let role = Role::parse(&role)
                .with_context(|| format!("role {role:?}: use admin or member"))?;
            let token = crate::api::auth::new_token();
            store
                .create_token(&name, role, &crate::api::auth::token_hash(&token))
                .await?;
            println!("{token}");
            eprintln!(
                "token {name:?} ({}) created; it is not shown again",
                role.as_str()
            );
        }
        TokenCommand::List => {
            for t in store.list_tokens().await? {
                let state = if t.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                println!("{}  {:<20} {:<6} {state}", t.id, t.name, t.role.as_str());
            }
        }
        TokenCommand::Revoke { name_or_id } => {
            if !store.revoke_token(&name_or_id).await? {
                bail!("no active token {name_or_id:?}");
            }
            println!("revoked {name_or_id}");
        }
    }
    Ok(())
}

/// Runs a `user` command; passwords are read from `input` (standard input).
///
/// # Errors
/// An unknown role or user, a password the rules refuse, or a storage error.
pub async fn user(
    store: &dyn Store,
    public_url: &str,
    command: UserCommand,
    input: &mut (dyn tokio::io::AsyncRead + Unpin + Send),
) -> anyhow::Result<()> {
    async fn read_password(
        input: &mut (dyn tokio::io::AsyncRead + Unpin + Send),
    ) -> anyhow::Result<String> {
        let mut text = String::new();
        input
            .take(64 * 1024)
            .read_to_string(&mut text)
            .await
            .context("reading the password from standard input")?;
        let line = text.lines().next().unwrap_or_default().to_string();
        crate::api::auth::hash_password(&line).map_err(anyhow::Error::msg)
    }
    async fn find(store: &dyn Store, email: &str) -> anyhow::Result<crate::store::UserView> {
        let found = store.login_user(email.trim()).await?;
        found
            .map(|(user, _)| user)
            .with_context(|| format!("no user {email:?}"))
    }
    match command {
        UserCommand::Create {
            email,
            name,
            role,
            password_stdin,
        } => {
            let role = Role::parse(&role)
                .with_context(|| format!("role {role:?}: use admin or member"))?;
            let address =
                EmailAddress::parse(&email).map_err(|e| anyhow::anyhow!("email {email:?}: {e}"))?;
            let hash = match password_stdin {
                true => Some(read_password(input).await?),
                false => None,
            };
            let user = match store.create_user(address.as_str(), name.trim(), role).await {
                Ok(user) => user,
                Err(crate::store::StoreError::Conflict(_)) => {
                    let existing = find(store, address.as_str()).await?;
                    let change = crate::store::UserChange {
                        name: (!name.trim().is_empty()).then(|| name.trim().to_string()),
                        role: Some(role),
                        notify: None,
                    };
                    store.update_user(existing.id, &change).await?
                }
                Err(e) => return Err(e.into()),
            };
            if let Some(hash) = hash {
                store.set_password(user.id, Some(&hash)).await?;
            }
            println!(
                "user {} ({}){}",
                user.email,
                role.as_str(),
                if password_stdin {
                    " can log in"
                } else {
                    " has no password: they cannot log in yet"
                }
            );
        }
        UserCommand::SetPassword { email } => {
            let user = find(store, &email).await?;
            let hash = read_password(input).await?;
            store.set_password(user.id, Some(&hash)).await?;
            println!("password set for {}; their sessions are ended", user.email);
        }
        UserCommand::Invite { email } => {
            let user = find(store, &email).await?;
            let link = crate::web::invite::make_link(store, public_url, &user).await?;
            println!("{link}");
            eprintln!(
                "the link lets {} set a password once, within {} hours",
                user.email,
                crate::web::invite::LINK_HOURS
            );
        }
        UserCommand::SignOut { email } => {
            let user = find(store, &email).await?;
            let n = store.revoke_user_sessions(user.id).await?;
            println!("ended {n} session(s) of {}", user.email);
        }
        UserCommand::List => {
            let mut cursor = None;
            loop {
                let page = store
                    .list_users(&crate::store::ListRequest { cursor, limit: 500 })
                    .await?;
                for u in &page.items {
                    let login = if u.can_log_in {
                        "can log in"
                    } else {
                        "no password"
                    };
                    println!(
                        "{}  {:<32} {:<6} {login}  {}",
                        u.id,
                        u.email,
                        u.role.as_str(),
                        u.name
                    );
                }
                match page.items.last() {
                    Some(last) if page.next_cursor.is_some() => cursor = Some(last.id),
                    _ => break,
                }
            }
        }
    }
    Ok(())
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = App::build(settings).await?;
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        signal.cancel();
    });
    app.run_until_stopped(shutdown).await
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn print_counts(store: &dyn Store) -> anyhow::Result<()> {
    for (status, n) in store.inbound_counts().await? {
        println!("{status:>10}: {n}");
    }
    Ok(())
}

/// What `ingest` stored.
#[derive(Debug, Default)]
pub struct IngestReport {
    /// (file, inbound id) for every message stored, in order.
    pub stored: Vec<(PathBuf, Uuid)>,
}

/// Stores every message in `files` through intake (source `import`,
/// recipient `to`), then processes everything pending.
///
/// # Errors
/// `to` is not an enabled alias, a file cannot be read, or storage fails.
pub async fn ingest_files(
    store: &Arc<dyn Store>,
    settings: &Settings,
    files: &[PathBuf],
    to: &str,
) -> anyhow::Result<IngestReport> {
    let directory = store.load_directory().await?;
    if !directory.accepts(to) {
        bail!("{to} is not an enabled alias");
    }
    let to = EmailAddress::parse(to)?.to_string();
    let processor = processor_for(store, settings).await?;
    let stop = CancellationToken::new();
    let (intake, writer) = Intake::start(
        Arc::clone(store),
        settings.intake.clone(),
        Some(processor.clone()),
        Arc::new(Notify::new()),
        stop.clone(),
    );
    let mut report = IngestReport::default();
    let result = submit_files(&intake, files, &to, &mut report).await;
    drop(intake);
    let _ = writer.await;
    result?;
    processor.drain().await?;
    Ok(report)
}

async fn submit_files(
    intake: &Intake,
    files: &[PathBuf],
    to: &str,
    report: &mut IngestReport,
) -> anyhow::Result<()> {
    for file in files {
        let data = read_file(file)?;
        for raw in mbox::split(&data) {
            let envelope = Envelope {
                rcpt_to: vec![to.to_string()],
                ..Envelope::default()
            };
            let id = intake
                .submit(InboundMessage::new(Source::Import, envelope, raw))
                .await
                .with_context(|| format!("storing a message from {}", file.display()))?;
            report.stored.push((file.clone(), id));
        }
    }
    Ok(())
}

fn read_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Processes everything pending and returns how many messages were handled.
///
/// # Errors
/// A store error that stopped processing.
pub async fn process_pending(store: &Arc<dyn Store>, settings: &Settings) -> anyhow::Result<usize> {
    let processor = processor_for(store, settings).await?;
    Ok(processor.drain().await?)
}

async fn processor_for(store: &Arc<dyn Store>, settings: &Settings) -> anyhow::Result<Processor> {
    let directory = DirectoryHandle::new(store.load_directory().await?);
    Ok(Processor::new(
        Arc::clone(store),
        directory,
        Policy::load(settings, store.as_ref()).await?,
        settings.processing.batch_max_messages,
    ))
}

/// Asks the service listening on `listen` for `/readyz`: healthy when the
/// database answers and intake can commit.
///
/// # Errors
/// No connection, a timeout, or a status other than 200.
pub async fn healthcheck(listen: SocketAddr) -> anyhow::Result<()> {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let check = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(
                format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(5), check)
        .await
        .context("health check timed out")?
        .with_context(|| format!("cannot reach {addr}"))?;
    let status_line = response.split(|&b| b == b'\n').next().unwrap_or_default();
    if status_line.starts_with(b"HTTP/1.1 200") {
        println!("healthy");
        Ok(())
    } else {
        bail!("unhealthy: {}", String::from_utf8_lossy(status_line).trim())
    }
}
