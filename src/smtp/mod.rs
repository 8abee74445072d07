//! The SMTP listener: our own tokio session loop on smtp-proto.
//!
//! Owns sockets, sessions and replies; never touches SQL. A message is
//! handed to [`Intake`] and acknowledged only after intake committed it.
//! RCPT is accepted only for enabled aliases (and their `+tag`
//! sub-addresses): this listener is never an open relay.

pub mod reply;
mod session;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::config::SmtpSettings;
use crate::domain::BlockListHandle;
use crate::domain::DirectoryHandle;
use crate::ingest::Intake;

/// What every session shares.
pub struct SmtpContext {
    pub settings: SmtpSettings,
    pub intake: Intake,
    pub directory: DirectoryHandle,
    pub blocked: BlockListHandle,
    /// Sender authentication; `None` when it could not be set up.
    pub auth: Option<Arc<Authenticator>>,
}

impl SmtpContext {
    fn accepts(&self, address: &str) -> bool {
        self.directory.current().accepts(address)
    }
}

/// Accepts connections until `shutdown` fires; each session runs on
/// `tracker` so the caller can wait for them to finish.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<SmtpContext>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let sessions = Arc::new(Semaphore::new(ctx.settings.max_sessions.max(1)));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = shutdown.cancelled() => break,
        };
        let (mut stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(err) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = Arc::clone(&sessions).try_acquire_owned() else {
            tracker.spawn(async move {
                let mut out = Vec::new();
                reply::TOO_BUSY.write_to(&mut out);
                let _ = stream.write_all(&out).await;
            });
            continue;
        };
        let ctx = Arc::clone(&ctx);
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            session::Session::new(ctx, stream, peer).run(shutdown).await;
            drop(permit);
        });
    }
}
