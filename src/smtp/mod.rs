//! The SMTP listener: our own tokio session loop on smtp-proto.
//!
//! Owns sockets, sessions and replies; never touches SQL. A message is
//! handed to [`Intake`] and acknowledged only after intake committed it.
//! RCPT is accepted only for enabled aliases (and their `+tag`
//! sub-addresses): this listener is never an open relay.

mod data;
pub mod reply;
mod session;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
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

    /// The address `RCPT TO:<postmaster>` stands for.
    fn postmaster(&self) -> Option<String> {
        let directory = self.directory.current();
        let alias = directory.postmaster(None)?;
        Some(format!("postmaster@{}", alias.address.domain()))
    }
}

/// Sessions open per client IP.
#[derive(Default)]
struct PerIp(Mutex<HashMap<IpAddr, usize>>);

/// One session counted in [`PerIp`]; uncounted when dropped.
struct IpSlot {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    fn take(self: &Arc<Self>, ip: IpAddr, limit: usize) -> Option<IpSlot> {
        let mut open = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = open.entry(ip).or_insert(0);
        if limit > 0 && *count >= limit {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            table: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self
            .table
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
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
    let per_ip = Arc::new(PerIp::default());
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(err) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Some(slot) = per_ip.take(peer.ip(), ctx.settings.max_sessions_per_ip) else {
            tracing::info!(peer = %peer, "smtp_per_ip_limit");
            refuse(&tracker, stream, reply::TOO_BUSY_FOR_IP);
            continue;
        };
        let Ok(permit) = Arc::clone(&sessions).try_acquire_owned() else {
            refuse(&tracker, stream, reply::TOO_BUSY);
            continue;
        };
        let ctx = Arc::clone(&ctx);
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            session::Session::new(ctx, stream, peer).run(shutdown).await;
            drop(permit);
            drop(slot);
        });
    }
}

fn refuse(tracker: &TaskTracker, mut stream: tokio::net::TcpStream, why: reply::Reply) {
    tracker.spawn(async move {
        let mut out = Vec::new();
        why.write_to(&mut out);
        let _ = stream.write_all(&out).await;
    });
}
