//! Wiring: `App::build` opens the store, migrates, applies the configured
//! pipelines and aliases, binds the listeners; `run_until_stopped` serves
//! until the token fires, then finishes in-flight work and stops.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::FutureExt;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, ApiState};
use crate::auth::Authenticator;
use crate::config::Settings;
use crate::domain::DirectoryHandle;
use crate::imap::{self, StatusBoard};
use crate::ingest::{Intake, Policy, Processor};
use crate::outbound::{Outbound, Sender};
use crate::smtp::{self, SmtpContext};
use crate::store::{self, MailboxStore, Store};
use crate::supervise::{Supervisor, why_ended};

/// A built, bound, not yet running service.
pub struct App {
    settings: Settings,
    store: Arc<dyn Store>,
    directory: DirectoryHandle,
    policy: Policy,
    /// The key outbound mail is signed with (`[outbound] dkim_*`).
    dkim: Option<crate::outbound::dkim::Dkim>,
    /// Access tokens of the `auth = "oauth2"` accounts and relay.
    tokens: crate::oauth::Tokens,
    smtp: TcpListener,
    http: TcpListener,
}

impl App {
    /// Opens and migrates the database, applies `[[pipelines]]`/`[[aliases]]`,
    /// and binds both listeners (port 0 picks a free port).
    ///
    /// # Errors
    /// The database cannot be opened or migrated, the bootstrap fails, or a
    /// listener cannot bind.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let dkim =
            crate::outbound::dkim::Dkim::load(&settings.outbound).map_err(anyhow::Error::msg)?;
        if let Some(d) = &dkim {
            tracing::info!(
                name = %d.record_name(),
                record = %d.record(),
                "dkim_signing: publish this TXT record"
            );
        }
        let store = open_store(&settings).await?;
        let tokens = crate::oauth::Tokens::new(
            &settings,
            &(Arc::clone(&store) as Arc<dyn crate::store::OAuthStore>),
        )?;
        let directory =
            DirectoryHandle::new(store.load_directory().await.context("loading aliases")?);
        let policy = Policy::load(&settings, store.as_ref())
            .await
            .context("loading the reply-token key")?;
        // The API is only as private as its listener without tokens.
        let has_token = store
            .list_tokens()
            .await?
            .iter()
            .any(|t| t.revoked_at.is_none());
        if !settings.http.listen.ip().is_loopback() && !has_token {
            anyhow::bail!(
                "refusing to serve the HTTP API on {} without an API token: create one with \
                 `emailin token create --name NAME --role admin`, or listen on 127.0.0.1",
                settings.http.listen
            );
        }
        let smtp = TcpListener::bind(settings.smtp.listen)
            .await
            .with_context(|| format!("binding SMTP listener on {}", settings.smtp.listen))?;
        let http = TcpListener::bind(settings.http.listen)
            .await
            .with_context(|| format!("binding HTTP listener on {}", settings.http.listen))?;
        Ok(Self {
            settings,
            store,
            directory,
            policy,
            dkim,
            tokens,
            smtp,
            http,
        })
    }

    pub fn smtp_addr(&self) -> SocketAddr {
        self.smtp.local_addr().unwrap_or(self.settings.smtp.listen)
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr().unwrap_or(self.settings.http.listen)
    }

    pub fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store)
    }

    /// Serves SMTP and HTTP and processes stored mail until `shutdown` fires.
    /// Then: stop accepting, let sessions in DATA finish, commit what intake
    /// holds, finish the processing batch in hand, close the database (on
    /// SQLite that folds the WAL into the database file).
    ///
    /// Every part runs under a [`Supervisor`]: one that may start over is
    /// restarted with backoff when it dies; when a vital one (intake, SMTP,
    /// HTTP) dies, the service stops as above and returns the error.
    ///
    /// # Errors
    /// A vital part died.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let supervisor = Supervisor::default();
        let tracker = TaskTracker::new();
        let stored = Arc::new(Notify::new());
        let intake_stop = CancellationToken::new();
        let processor = Processor::new(
            Arc::clone(&self.store),
            self.directory.clone(),
            self.policy.clone(),
            self.settings.processing.batch_max_messages,
        );
        let (intake, intake_task) = Intake::start(
            Arc::clone(&self.store),
            self.settings.intake.clone(),
            Some(processor.clone()),
            Arc::clone(&stored),
            intake_stop.clone(),
        );
        let intake_task = supervisor.vital("intake", intake_stop.clone(), async move {
            intake_task.await.map_err(why_ended)
        });
        let processor_stop = CancellationToken::new();
        let poll = Duration::from_secs(self.settings.processing.poll_interval_secs.max(1));
        let processor_task = {
            let (stored, stop) = (Arc::clone(&stored), processor_stop.clone());
            supervisor.restartable("processor", processor_stop.clone(), move || {
                processor
                    .clone()
                    .run(Arc::clone(&stored), poll, stop.clone())
            })
        };

        tracing::info!(smtp = %self.smtp_addr(), http = %self.http_addr(), "emailin listening");

        let imap_board = StatusBoard::default();
        let imap_stop = CancellationToken::new();
        let auth = match Authenticator::new(&self.settings.auth, &self.settings.smtp.hostname) {
            Ok(auth) => Some(Arc::new(auth)),
            Err(err) => {
                tracing::error!(error = %err, "sender authentication is off: no resolver");
                None
            }
        };
        let imap_shared = imap::Shared {
            store: Arc::clone(&self.store) as Arc<dyn MailboxStore>,
            intake: intake.clone(),
            max_message_bytes: self.settings.smtp.max_message_bytes,
            board: imap_board.clone(),
            auth: auth.clone(),
            tokens: self.tokens.imap.clone(),
        };
        let imap_tasks =
            imap::spawn_all(&self.settings.imap, &imap_shared, &imap_stop, &supervisor);

        let intake_health = intake.health();
        let ctx = Arc::new(SmtpContext {
            settings: self.settings.smtp.clone(),
            intake,
            directory: self.directory.clone(),
            blocked: self.policy.blocked.clone(),
            auth: auth.clone(),
        });
        let smtp_task = supervisor.vital(
            "smtp",
            shutdown.clone(),
            smtp::serve(self.smtp, ctx, shutdown.clone(), tracker.clone()).map(Ok),
        );

        let outbound = Arc::new(Outbound::new(
            &self.settings,
            self.policy.reply_key.clone(),
            self.dkim.clone(),
            self.tokens.outbound.clone(),
            auth.clone(),
        ));
        let sender_stop = CancellationToken::new();
        let sender_task = outbound.enabled.then(|| {
            let sender = Sender::new(
                Arc::clone(&self.store),
                self.settings.outbound.clone(),
                self.settings.smtp.hostname.clone(),
                Arc::clone(&outbound.wake),
                self.dkim.clone(),
                self.tokens.outbound.clone(),
            )
            .checking_domains(Arc::clone(&outbound.domains));
            let stop = sender_stop.clone();
            supervisor.restartable("outbox", sender_stop.clone(), move || {
                sender.clone().run(stop.clone())
            })
        });

        let webhooks_wake = Arc::new(Notify::new());
        let webhooks = crate::webhooks::Webhooks::new(
            Arc::clone(&self.store),
            self.settings.webhook_delivery.clone(),
            self.settings.webhooks.clone(),
            Arc::clone(&webhooks_wake),
            outbound.enabled.then(|| crate::webhooks::Notifier {
                settings: self.settings.notifications.clone(),
                from: outbound.system_from.clone(),
                domain: outbound.domain.clone(),
                base_url: self
                    .settings
                    .http
                    .public_url
                    .trim()
                    .trim_end_matches('/')
                    .to_string(),
                wake: Arc::clone(&outbound.wake),
                key: self.policy.reply_key.clone(),
            }),
        )
        .yielding_to(intake_health.clone());
        let webhooks_stop = CancellationToken::new();
        let webhooks_task = {
            let stop = webhooks_stop.clone();
            let worker = webhooks.clone();
            supervisor.restartable("webhooks", webhooks_stop.clone(), move || {
                worker.clone().run(stop.clone())
            })
        };

        let search_stop = CancellationToken::new();
        let search_task = {
            let store = Arc::clone(&self.store);
            let intake = intake_health.clone();
            let holder = format!("search-{}", uuid::Uuid::new_v4().simple());
            let stop = search_stop.clone();
            supervisor.restartable("search", search_stop.clone(), move || {
                crate::search::run(
                    Arc::clone(&store),
                    holder.clone(),
                    Duration::from_millis(300),
                    Some(intake.clone()),
                    stop.clone(),
                )
            })
        };
        let retention_stop = CancellationToken::new();
        let retention_task = self.settings.retention.raw_days.is_some().then(|| {
            let (store, settings) = (Arc::clone(&self.store), self.settings.retention.clone());
            let stop = retention_stop.clone();
            supervisor.restartable("retention", retention_stop.clone(), move || {
                crate::retention::run(Arc::clone(&store), settings.clone(), stop.clone())
            })
        });

        let state = ApiState {
            store: Arc::clone(&self.store),
            imap: imap_board,
            processor: Arc::clone(&stored),
            directory: self.directory.clone(),
            outbound,
            blocked: self.policy.blocked.clone(),
            settings: Arc::new(self.settings.clone()),
            intake: intake_health,
            parts: supervisor.health(),
            shutdown: shutdown.clone(),
            webhooks,
        };
        let router = api::router_with(state.clone(), crate::web::routes(&state));
        let http_stop = shutdown.clone();
        let http_task = supervisor.vital("http", shutdown.clone(), async move {
            axum::serve(
                self.http,
                router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(async move { http_stop.cancelled().await })
            .await
            .map_err(|err| format!("HTTP server: {err}"))
        });

        let fatal = supervisor.fatal();
        tokio::select! {
            () = shutdown.cancelled() => tracing::info!("shutting down"),
            () = fatal.cancelled() => tracing::error!("a vital part died; shutting down"),
        }
        // Whatever started the stop, every part is now told to stop.
        shutdown.cancel();
        let _ = smtp_task.await;
        tracker.close();
        tracker.wait().await;
        imap_stop.cancel();
        futures::future::join_all(imap_tasks).await;
        // Sessions are gone, so nothing new reaches intake; drain and stop it.
        intake_stop.cancel();
        let _ = intake_task.await;
        processor_stop.cancel();
        let _ = processor_task.await;
        sender_stop.cancel();
        if let Some(task) = sender_task {
            let _ = task.await;
        }
        webhooks_stop.cancel();
        let _ = webhooks_task.await;
        search_stop.cancel();
        let _ = search_task.await;
        retention_stop.cancel();
        if let Some(task) = retention_task {
            let _ = task.await;
        }
        let _ = http_task.await;
        // Closed whatever the parts' end: everything else has stopped.
        self.store.close().await;
        if let Some(failure) = supervisor.failure() {
            anyhow::bail!("stopped because a vital part died: {failure}");
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Connects, migrates and bootstraps the configured database.
///
/// # Errors
/// Connection, migration or bootstrap failure, with context.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    let store = store::connect(&settings.database)
        .await
        .with_context(|| format!("opening database {}", redact_url(&settings.database.url)))?;
    store.migrate().await.context("running migrations")?;
    store
        .bootstrap(&settings.pipelines, &settings.aliases)
        .await
        .context("applying configured pipelines and aliases")?;
    Ok(store)
}

/// The URL with any password replaced, for logs and errors.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn redact_url_hides_the_password_only() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("sqlite://data/x.db"), "sqlite://data/x.db");
    }
}
