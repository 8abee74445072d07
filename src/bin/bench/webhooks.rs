//! `bench webhooks`: webhook deliveries per second to a local receiver.
//!
//! Seeds MESSAGES messages (each a new record: `record.created` and
//! `message.received`), then starts the service in this process with two
//! webhooks pointing at a receiver in this process that answers 204. The
//! figure is deliveries from the service's start to the last one the
//! receiver got, over that time: fan-out and signed delivery of a backlog.
//!
//! `bench receiver`: the same receiver on its own, for a server under load
//! (see bench/webhooks.sh).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use emailin::app::App;
use emailin::config::{Secret, Settings, WebhookConfig};
use tokio_util::sync::CancellationToken;

/// A receiver answering 204 to every post; returns its address and count.
pub async fn receiver(listen: &str) -> anyhow::Result<(std::net::SocketAddr, Arc<AtomicUsize>)> {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    let app = axum::Router::new().fallback(move || {
        let seen = Arc::clone(&seen);
        async move {
            seen.fetch_add(1, Ordering::Relaxed);
            axum::http::StatusCode::NO_CONTENT
        }
    });
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, count))
}

pub async fn serve_receiver(listen: &str) -> anyhow::Result<()> {
    let (addr, count) = receiver(listen).await?;
    eprintln!("receiving webhooks on {addr}");
    let mut last = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let now = count.load(Ordering::Relaxed);
        if now != last {
            eprintln!("received {now}");
            last = now;
        }
    }
}

pub async fn run(url: &str, messages: usize) -> anyhow::Result<()> {
    super::seed(url, messages, "sales@localhost", 2048, 1000).await?;
    let (addr, count) = receiver("127.0.0.1:0").await?;
    let mut settings = Settings::load(None)?;
    settings.database.url = url.to_string();
    settings.http.listen = "127.0.0.1:0".parse()?;
    settings.smtp.listen = "127.0.0.1:0".parse()?;
    settings.webhooks = ["a", "b"]
        .iter()
        .map(|path| WebhookConfig {
            url: format!("http://{addr}/{path}"),
            secret: Secret::new(emailin::webhooks::new_secret()),
            events: vec![],
        })
        .collect();
    let want = messages * 2 * settings.webhooks.len();
    let app = App::build(settings).await?;
    let stop = CancellationToken::new();
    let start = Instant::now();
    let task = tokio::spawn(app.run_until_stopped(stop.clone()));
    let deadline = start + Duration::from_secs(600);
    while count.load(Ordering::Relaxed) < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = start.elapsed();
    let got = count.load(Ordering::Relaxed);
    stop.cancel();
    task.await??;
    println!(
        "{got} of {want} deliveries (2 webhooks, {messages} messages) in {:.2} s: {:.0} deliveries/s",
        took.as_secs_f64(),
        got as f64 / took.as_secs_f64()
    );
    println!(
        "reproduce: cargo run --release --bin bench -- webhooks --database-url <fresh database> \
         --messages {messages}"
    );
    Ok(())
}
