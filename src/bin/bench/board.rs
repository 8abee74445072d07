//! `bench board`: how long the web UI's board takes to render a pipeline.
//!
//! Starts the service in this process on the given database (its HTTP
//! listener on 127.0.0.1, a free port), gives a user a session the way a
//! login does, then loads `/?pipeline=NAME` over a fresh HTTP/1.1
//! connection each time: the first load right after start, then LOADS
//! more. Each time is connect to the last byte of the page.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use emailin::app::App;
use emailin::config::Settings;
use emailin::store::{NewSession, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

pub async fn run(url: &str, pipeline: &str, loads: usize) -> anyhow::Result<()> {
    let mut settings = Settings::load(None)?;
    settings.database.url = url.to_string();
    settings.http.listen = "127.0.0.1:0".parse()?;
    settings.smtp.listen = "127.0.0.1:0".parse()?;
    let app = App::build(settings).await?;
    let (addr, store) = (app.http_addr(), app.store());
    let stop = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(stop.clone()));

    let email = "bench-board@localhost";
    let user = match store.login_user(email).await? {
        Some((user, _)) => user,
        None => store.create_user(email, "Bench", Role::Member).await?,
    };
    let hash =
        emailin::api::auth::hash_password("bench board password").map_err(anyhow::Error::msg)?;
    store.set_password(user.id, Some(&hash)).await?;
    let cookie = emailin::web::session::random_token();
    store
        .create_session(&NewSession {
            id_hash: emailin::web::session::session_hash(&cookie),
            user_id: user.id,
            csrf: emailin::web::session::random_token(),
            client_ip: None,
            user_agent: Some("bench".into()),
            expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
        })
        .await?;

    let path = format!("/?pipeline={}", emailin::web::escape_query(pipeline));
    let (first, cards, bytes) = load(addr, &path, &cookie).await?;
    let mut times = Vec::with_capacity(loads);
    for _ in 0..loads {
        times.push(load(addr, &path, &cookie).await?.0);
    }
    stop.cancel();
    task.await??;
    times.sort();
    let pick = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("board {pipeline:?}: {cards} cards, {bytes} bytes of HTML");
    println!("first load after start: {:.1} ms", ms(first));
    if !times.is_empty() {
        println!(
            "{loads} further loads: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            ms(pick(0.5)),
            ms(pick(0.99)),
            ms(times[times.len() - 1])
        );
    }
    println!(
        "reproduce: cargo run --release --bin bench -- board --database-url {url} \
         --pipeline {pipeline} --loads {loads}"
    );
    Ok(())
}

/// One page load: its time, the cards on it, its size.
async fn load(
    addr: std::net::SocketAddr,
    path: &str,
    cookie: &str,
) -> anyhow::Result<(Duration, usize, usize)> {
    let start = Instant::now();
    let mut conn = TcpStream::connect(addr).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: emailin_session={cookie}\r\n\
         Connection: close\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    conn.read_to_end(&mut response).await?;
    let took = start.elapsed();
    let text = String::from_utf8_lossy(&response);
    let status = text.lines().next().context("an empty answer")?;
    if !status.contains(" 200 ") {
        bail!("the board answered {status:?}");
    }
    Ok((
        took,
        text.matches("<li class=\"card").count(),
        response.len(),
    ))
}
