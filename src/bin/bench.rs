//! Load tool for emailin.
//!
//! `bench smtp`: N concurrent SMTP sessions send M messages (size mix, a
//! share of replies to earlier messages, unique Message-IDs), record every
//! Message-ID that got a `250`, then check in the database that each one is
//! stored and processed. Prints messages/s, end-of-DATA → `250` latency
//! percentiles, failures, and, given the server's pid, its peak RSS and the
//! CPU time it spent per message, in all and per thread.
//!
//! `bench seed`: stores and processes many generated messages in-process
//! through the real intake (for scale tests), with the settings that
//! `EMAILIN__*` variables give. `bench idle`: holds many idle SMTP sessions
//! open and reports the server's RSS. `bench count`: inbound rows per status.
//! `bench wal`: which tables and indexes a SQLite load wrote, in WAL frames
//! (pages) per message. `bench board`: the web UI board's render time.
//! `bench webhooks`: webhook deliveries per second; `bench receiver`: a
//! local webhook receiver.

#[path = "bench/board.rs"]
mod board;
#[path = "bench/search.rs"]
mod search;
#[path = "bench/webhooks.rs"]
mod webhooks;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use emailin::config::{DatabaseSettings, Settings};
use emailin::domain::{Envelope, InboundMessage, Source};
use emailin::ingest::{Intake, Policy, Processor};
use emailin::store::Store;
use rand::Rng;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "bench", about = "Load tool for emailin")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Drive an SMTP server and verify every acknowledged message in its database.
    Smtp(SmtpArgs),
    /// Store and process COUNT generated messages directly through intake.
    Seed {
        #[arg(long)]
        database_url: String,
        #[arg(long, default_value_t = 1_000_000)]
        count: usize,
        #[arg(long, default_value = "sales@localhost")]
        to: String,
        #[arg(long, default_value_t = 2048)]
        size: usize,
        /// Distinct sender addresses, used in turn (each one a contact).
        #[arg(long, default_value_t = 1000)]
        senders: usize,
    },
    /// Open SESSIONS idle SMTP sessions, then print the server's RSS.
    Idle {
        #[arg(long, default_value = "127.0.0.1:2525")]
        addr: String,
        #[arg(long, default_value_t = 500)]
        sessions: usize,
        #[arg(long)]
        pid: u32,
    },
    /// Send one message of about MB megabytes (10^6 bytes; a base64 attachment), then print the server's peak RSS.
    Big {
        #[arg(long, default_value = "127.0.0.1:2525")]
        addr: String,
        #[arg(long, default_value_t = 25)]
        mb: usize,
        #[arg(long)]
        pid: u32,
        #[arg(long, default_value = "sales@localhost")]
        to: String,
    },
    /// Send one message of PARTS small MIME parts while another sender sends
    /// a short message every 50 ms; print that sender's worst and p99 `250`
    /// latency while the big one is taken in and processed.
    Parts {
        #[arg(long, default_value = "127.0.0.1:2525")]
        addr: String,
        #[arg(long, default_value_t = 280_000)]
        parts: usize,
        /// Instead: one attachment of about MB megabytes (as `big` sends).
        #[arg(long)]
        mb: Option<usize>,
        /// How long the other sender keeps sending after the big message's `250`.
        #[arg(long, default_value_t = 20)]
        watch_secs: u64,
        #[arg(long, default_value = "sales@localhost")]
        to: String,
    },
    /// Time the web UI's board of PIPELINE on a database (seed it first).
    Board {
        #[arg(long)]
        database_url: String,
        #[arg(long, default_value = "Sales")]
        pipeline: String,
        /// Loads after the first one.
        #[arg(long, default_value_t = 50)]
        loads: usize,
    },
    /// Search latency: seed MESSAGES varied messages (0: use what is
    /// there), index them, then time QUERIES searches of each kind.
    Search {
        #[arg(long)]
        database_url: String,
        #[arg(long, default_value_t = 1_000_000)]
        messages: usize,
        #[arg(long, default_value_t = 200)]
        queries: usize,
    },
    /// Webhook deliveries per second: seed MESSAGES, then deliver their
    /// events to two webhooks of a local receiver.
    Webhooks {
        #[arg(long)]
        database_url: String,
        #[arg(long, default_value_t = 2000)]
        messages: usize,
    },
    /// Answer 204 to every webhook post on LISTEN (for a server under load).
    Receiver {
        #[arg(long, default_value = "127.0.0.1:9300")]
        listen: String,
    },
    /// Print inbound rows per status.
    Count {
        #[arg(long)]
        database_url: String,
    },
    /// Attribute the frames of a SQLite database's WAL to the tables and
    /// indexes whose pages they hold. Run the server with checkpoints off
    /// (EMAILIN__DATABASE__SQLITE_CHECKPOINT_INTERVAL_MS=0 and
    /// EMAILIN__DATABASE__SQLITE_WAL_AUTOCHECKPOINT=0), send the load, then
    /// run this while the server still holds the file: the WAL then holds
    /// every page each commit wrote.
    Wal {
        #[arg(long)]
        database_url: String,
        /// Messages the load stored, for per-message figures.
        #[arg(long)]
        messages: Option<usize>,
    },
}

#[derive(Parser, Clone)]
struct SmtpArgs {
    #[arg(long, default_value = "127.0.0.1:2525")]
    addr: String,
    /// Database the server writes to, for the final check (skipped without it).
    #[arg(long)]
    database_url: Option<String>,
    /// Server process id, for its peak RSS and CPU time.
    #[arg(long)]
    pid: Option<u32>,
    #[arg(long, default_value_t = 50)]
    sessions: usize,
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Message sizes in bytes, used in turn.
    #[arg(long, value_delimiter = ',', default_value = "5120")]
    sizes: Vec<usize>,
    /// Share of messages that reply to an earlier acknowledged one (0..1).
    #[arg(long, default_value_t = 0.2)]
    reply_share: f64,
    /// Keep each session's connection for its next message.
    #[arg(long)]
    reuse: bool,
    /// Overall message rate limit per second (0 = as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    #[arg(long, default_value = "sales@localhost")]
    to: String,
    /// Distinct sender addresses, used in turn (each one a contact).
    #[arg(long, default_value_t = 1000)]
    senders: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Smtp(args) => smtp(args).await,
        Command::Seed {
            database_url,
            count,
            to,
            size,
            senders,
        } => seed(&database_url, count, &to, size, senders).await,
        Command::Idle {
            addr,
            sessions,
            pid,
        } => idle(&addr, sessions, pid).await,
        Command::Big { addr, mb, pid, to } => big(&addr, mb, pid, &to).await,
        Command::Parts {
            addr,
            parts,
            mb,
            watch_secs,
            to,
        } => {
            let (raw, what) = match mb {
                Some(mb) => (big_message(mb, &to), format!("--mb {mb}")),
                None => (many_parts_message(parts, &to), format!("--parts {parts}")),
            };
            others_while(&addr, raw, &what, watch_secs, &to).await
        }
        Command::Board {
            database_url,
            pipeline,
            loads,
        } => board::run(&database_url, &pipeline, loads).await,
        Command::Webhooks {
            database_url,
            messages,
        } => webhooks::run(&database_url, messages).await,
        Command::Search {
            database_url,
            messages,
            queries,
        } => search::run(&database_url, messages, queries).await,
        Command::Receiver { listen } => webhooks::serve_receiver(&listen).await,
        Command::Count { database_url } => {
            let store = open(&database_url).await?;
            for (status, n) in store.inbound_counts().await? {
                println!("{status} {n}");
            }
            Ok(())
        }
        Command::Wal {
            database_url,
            messages,
        } => {
            print!("{}", wal_report(&database_url).await?.render(messages));
            Ok(())
        }
    }
}

/// The WAL's frames per table or index (`dbstat`'s names).
struct WalReport {
    page_size: u32,
    frames: u64,
    pages: usize,
    /// Name, frames, distinct pages; most frames first.
    trees: Vec<(String, u64, usize)>,
}

impl WalReport {
    fn render(&self, messages: Option<usize>) -> String {
        let per = |n: u64| {
            messages.map_or(String::new(), |m| {
                format!("{:.3}", n as f64 / m.max(1) as f64)
            })
        };
        let mut out = format!(
            "WAL: {} frames of {} bytes, {} distinct pages{}\n{:<36} {:>9} {:>12} {:>8}\n",
            self.frames,
            self.page_size,
            self.pages,
            messages.map_or(String::new(), |m| format!(
                ", {} per message over {m} messages",
                per(self.frames)
            )),
            "table or index",
            "frames",
            "per message",
            "pages"
        );
        for (name, frames, pages) in &self.trees {
            out.push_str(&format!(
                "{name:<36} {frames:>9} {:>12} {pages:>8}\n",
                per(*frames)
            ));
        }
        out
    }
}

/// Reads the WAL of the SQLite database at `url`, then names each frame's
/// page through `dbstat` on a read-only connection (which never checkpoints).
async fn wal_report(url: &str) -> anyhow::Result<WalReport> {
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
    use std::str::FromStr;
    if !url.starts_with("sqlite:") {
        bail!("bench wal reads a SQLite database (sqlite://PATH), not {url}");
    }
    let options = SqliteConnectOptions::from_str(url)?.read_only(true);
    let mut wal = options.get_filename().as_os_str().to_owned();
    wal.push("-wal");
    let bytes =
        std::fs::read(&wal).with_context(|| format!("reading {}", wal.to_string_lossy()))?;
    let (page_size, per_page) = wal_frames(&bytes)?;
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?;
    let names: HashMap<i64, String> = sqlx::query_as("SELECT pageno, name FROM dbstat")
        .fetch_all(&pool)
        .await?
        .into_iter()
        .collect();
    pool.close().await;
    let mut trees: HashMap<&str, (u64, usize)> = HashMap::new();
    for (page, n) in &per_page {
        let name = names
            .get(&i64::from(*page))
            .map_or("(free or not in the database)", String::as_str);
        let tree = trees.entry(name).or_default();
        tree.0 += n;
        tree.1 += 1;
    }
    let mut trees: Vec<(String, u64, usize)> = trees
        .into_iter()
        .map(|(name, (frames, pages))| (name.to_string(), frames, pages))
        .collect();
    trees.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(WalReport {
        page_size,
        frames: per_page.values().sum(),
        pages: per_page.len(),
        trees,
    })
}

/// Frames per database page in a WAL file: those after its 32-byte header
/// whose salts match the header's. Frames left from before the WAL last
/// restarted carry older salts and end the count.
fn wal_frames(wal: &[u8]) -> anyhow::Result<(u32, HashMap<u32, u64>)> {
    let word = |at: usize| u32::from_be_bytes([wal[at], wal[at + 1], wal[at + 2], wal[at + 3]]);
    if wal.len() < 32 || word(0) & !1 != 0x377f_0682 {
        bail!("not a SQLite WAL file");
    }
    let page_size = match word(8) {
        1 => 65_536,
        n => n,
    };
    let frame = 24 + page_size as usize;
    let mut frames = HashMap::new();
    let mut at = 32;
    while at + frame <= wal.len() && wal[at + 8..at + 16] == wal[16..24] {
        *frames.entry(word(at)).or_default() += 1;
        at += frame;
    }
    Ok((page_size, frames))
}

async fn open(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    let settings = DatabaseSettings {
        url: url.to_string(),
        max_connections: 4,
        busy_timeout_ms: 30_000,
        sqlite_cache_kib: 8192,
        sqlite_wal_autocheckpoint: 10000,
        // A reader of the server's file: the server checkpoints it.
        sqlite_checkpoint_interval_ms: 0,
    };
    // The server owns the schema: this tool only reads what it wrote.
    Ok(emailin::store::connect(&settings).await?)
}

/// What all sessions share.
struct Shared {
    args: SmtpArgs,
    run: String,
    next: AtomicUsize,
    acked: Mutex<Vec<String>>,
    latencies: Mutex<Vec<Duration>>,
    failures: AtomicUsize,
    start: Instant,
}

async fn smtp(args: SmtpArgs) -> anyhow::Result<()> {
    // Opened first, so the final check times processing, not the connect.
    let store = match &args.database_url {
        Some(url) => Some(open(url).await?),
        None => None,
    };
    let cpu_before = args.pid.and_then(cpu_time);
    let shared = Arc::new(Shared {
        run: format!("{:x}", rand::rng().random::<u64>()),
        next: AtomicUsize::new(0),
        acked: Mutex::new(Vec::with_capacity(args.messages)),
        latencies: Mutex::new(Vec::with_capacity(args.messages)),
        failures: AtomicUsize::new(0),
        start: Instant::now(),
        args,
    });
    let mut tasks = Vec::new();
    for _ in 0..shared.args.sessions {
        let shared = Arc::clone(&shared);
        tasks.push(tokio::spawn(async move { session(shared).await }));
    }
    for t in tasks {
        if let Err(err) = t.await? {
            eprintln!("session error: {err:#}");
        }
    }
    let elapsed = shared.start.elapsed();
    let args = &shared.args;
    let acked = shared.acked.lock().await.clone();
    let mut lat = shared.latencies.lock().await.clone();
    lat.sort();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i].as_secs_f64() * 1000.0
    };
    println!(
        "sent {} messages over {} sessions ({}), sizes {:?}, {} senders, reply share {}{}",
        args.messages,
        args.sessions,
        if args.reuse {
            "connections reused"
        } else {
            "new connection per message"
        },
        args.sizes,
        args.senders,
        args.reply_share,
        if args.rate > 0 {
            format!(", rate limit {}/s", args.rate)
        } else {
            String::new()
        }
    );
    println!(
        "acknowledged {} in {:.2} s: {:.0} messages/s; failures {}",
        acked.len(),
        elapsed.as_secs_f64(),
        acked.len() as f64 / elapsed.as_secs_f64(),
        shared.failures.load(Ordering::Relaxed)
    );
    println!(
        "end-of-DATA to 250: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(0.5),
        pct(0.95),
        pct(0.99),
        pct(1.0)
    );
    if let Some(pid) = args.pid {
        println!(
            "server peak RSS: {}",
            peak_rss(pid).unwrap_or_else(|| "unknown".into())
        );
    }
    if let Some(store) = store {
        verify(store.as_ref(), &acked, shared.start).await?;
    }
    if let (Some(before), Some(after)) = (cpu_before, args.pid.and_then(cpu_time)) {
        println!(
            "server CPU ({}): {}",
            if args.database_url.is_some() {
                "from the first session to processing caught up"
            } else {
                "from the first session to the last 250"
            },
            cpu_report(&before, &after, acked.len())
        );
    }
    Ok(())
}

/// CPU time a process has used, in clock ticks: in all (threads that ended
/// included) and per live thread id, with the thread's name.
struct CpuTime {
    total: u64,
    threads: HashMap<u32, (String, u64)>,
}

/// Clock ticks per second in `/proc`'s figures (`USER_HZ`, which Linux fixes
/// at 100 for user space).
const TICKS_PER_SECOND: f64 = 100.0;

/// Reads `/proc/PID/stat` and each `/proc/PID/task/TID/stat`; `None` when the
/// process is gone or this is not Linux.
fn cpu_time(pid: u32) -> Option<CpuTime> {
    let total = stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    let mut threads = HashMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        // A thread may end between the listing and the reads: it is left out
        // (its time is in the process's total).
        let (Ok(stat), Ok(name)) = (
            std::fs::read_to_string(task.path().join("stat")),
            std::fs::read_to_string(task.path().join("comm")),
        ) else {
            continue;
        };
        if let Some(ticks) = stat_ticks(&stat) {
            threads.insert(tid, (name.trim().to_string(), ticks));
        }
    }
    Some(CpuTime { total, threads })
}

/// User plus system time from a `stat` line: fields 14 and 15, counted after
/// the command name, which may itself hold spaces and parentheses.
fn stat_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// `5.62 s, 281 µs per message; by thread name: tokio-runtime-w 170, …`:
/// what the process used between two readings, per message, and per thread
/// name (threads that started meanwhile count from zero; threads that ended
/// count in the total only).
fn cpu_report(before: &CpuTime, after: &CpuTime, messages: usize) -> String {
    let seconds = after.total.saturating_sub(before.total) as f64 / TICKS_PER_SECOND;
    let per_message = |s: f64| s * 1e6 / messages.max(1) as f64;
    let mut by_name: Vec<(&str, f64)> = Vec::new();
    for (tid, (name, ticks)) in &after.threads {
        let earlier = before.threads.get(tid).map_or(0, |(_, t)| *t);
        let used = ticks.saturating_sub(earlier) as f64 / TICKS_PER_SECOND;
        match by_name.iter_mut().find(|(n, _)| n == name) {
            Some((_, sum)) => *sum += used,
            None => by_name.push((name, used)),
        }
    }
    by_name.retain(|(_, used)| *used > 0.0);
    by_name.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    let threads: Vec<String> = by_name
        .iter()
        .map(|(name, used)| format!("{name} {:.0}", per_message(*used)))
        .collect();
    format!(
        "{seconds:.2} s, {:.0} µs per message; by thread name, µs per message: {}",
        per_message(seconds),
        if threads.is_empty() {
            "none".to_string()
        } else {
            threads.join(", ")
        }
    )
}

/// Every acknowledged Message-ID must be stored as a message, and nothing
/// may be left pending. Prints when processing had caught up (checked every
/// 10 ms by the count of pending rows alone, which costs the server the same
/// on a database of any size), as a rate from `start`.
async fn verify(store: &dyn Store, acked: &[String], start: Instant) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let pending = store.pending_count().await?;
        if pending == 0 {
            let elapsed = start.elapsed().as_secs_f64();
            println!(
                "processed: none pending {elapsed:.2} s after the start: {:.0} messages/s stored and processed",
                acked.len() as f64 / elapsed
            );
            break;
        }
        if Instant::now() > deadline {
            bail!("{pending} messages still pending after 120 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let found = store.stored_message_ids(acked).await?;
    let counts = store.inbound_counts().await?;
    println!(
        "check: {}/{} acknowledged messages stored and processed; inbound by status {counts:?}",
        found.len(),
        acked.len()
    );
    if found.len() != acked.len() {
        bail!(
            "{} acknowledged messages are missing",
            acked.len() - found.len()
        );
    }
    Ok(())
}

fn peak_rss(pid: u32) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .map(|l| l[key.len()..].trim().to_string())
    };
    Some(format!("{} (now {})", line("VmHWM:")?, line("VmRSS:")?))
}

async fn session(shared: Arc<Shared>) -> anyhow::Result<()> {
    let args = &shared.args;
    let mut conn: Option<Conn> = None;
    loop {
        let i = shared.next.fetch_add(1, Ordering::Relaxed);
        if i >= args.messages {
            break;
        }
        if args.rate > 0 {
            let due = shared.start + Duration::from_secs_f64(i as f64 / args.rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let message_id = format!("bench-{}-{i}@load.example", shared.run);
        let parent = {
            let acked = shared.acked.lock().await;
            (!acked.is_empty() && rand::rng().random_bool(args.reply_share.clamp(0.0, 1.0)))
                .then(|| acked[rand::rng().random_range(0..acked.len())].clone())
        };
        let sender = i % args.senders.max(1);
        let raw = build_message(
            i,
            sender,
            &message_id,
            parent.as_deref(),
            args.sizes[i % args.sizes.len()],
            &args.to,
        );
        if conn.is_none() {
            conn = Some(Conn::open(&args.addr).await.context("connect")?);
        }
        let Some(c) = conn.as_mut() else { continue };
        match c
            .send(&format!("sender{sender}@load.example"), &args.to, &raw)
            .await
        {
            Ok(Some(latency)) => {
                shared.acked.lock().await.push(message_id);
                shared.latencies.lock().await.push(latency);
            }
            Ok(None) => {
                shared.failures.fetch_add(1, Ordering::Relaxed);
            }
            Err(err) => {
                shared.failures.fetch_add(1, Ordering::Relaxed);
                eprintln!("message {i}: {err:#}");
                conn = None;
                continue;
            }
        }
        if !args.reuse
            && let Some(mut c) = conn.take()
        {
            let _ = c.quit().await;
        }
    }
    if let Some(mut c) = conn {
        let _ = c.quit().await;
    }
    Ok(())
}

fn build_message(
    i: usize,
    sender: usize,
    message_id: &str,
    parent: Option<&str>,
    size: usize,
    to: &str,
) -> Vec<u8> {
    let mut m = format!(
        "From: Sender {sender} <sender{sender}@load.example>\r\nTo: {to}\r\nSubject: Load message {i}\r\nMessage-ID: <{message_id}>\r\n\
Date: Sun, 22 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n"
    );
    if let Some(p) = parent {
        m.push_str(&format!("In-Reply-To: <{p}>\r\nReferences: <{p}>\r\n"));
    }
    m.push_str("\r\n");
    let line = "The quick brown fox jumps over the lazy dog, again and again and again.\r\n";
    while m.len() < size {
        m.push_str(line);
    }
    m.into_bytes()
}

struct Conn {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Conn {
    async fn open(addr: &str) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        let mut c = Self {
            reader: BufReader::new(r),
            writer: w,
        };
        expect(c.reply().await?, 220)?;
        c.writer.write_all(b"EHLO bench.load.example\r\n").await?;
        expect(c.reply().await?, 250)?;
        Ok(c)
    }

    /// One transaction; `Ok(Some(latency))` on 250, `Ok(None)` on a refusal.
    async fn send(&mut self, from: &str, to: &str, raw: &[u8]) -> anyhow::Result<Option<Duration>> {
        self.writer
            .write_all(format!("MAIL FROM:<{from}>\r\n").as_bytes())
            .await?;
        if self.reply().await? != 250 {
            self.writer.write_all(b"RSET\r\n").await?;
            self.reply().await?;
            return Ok(None);
        }
        self.writer
            .write_all(format!("RCPT TO:<{to}>\r\n").as_bytes())
            .await?;
        if self.reply().await? != 250 {
            self.writer.write_all(b"RSET\r\n").await?;
            self.reply().await?;
            return Ok(None);
        }
        self.writer.write_all(b"DATA\r\n").await?;
        expect(self.reply().await?, 354)?;
        // Generated messages have no line starting with '.', so no dot-stuffing is needed.
        self.writer.write_all(raw).await?;
        self.writer.write_all(b".\r\n").await?;
        let sent = Instant::now();
        let code = self.reply().await?;
        Ok((code == 250).then(|| sent.elapsed()))
    }

    async fn quit(&mut self) -> anyhow::Result<()> {
        self.writer.write_all(b"QUIT\r\n").await?;
        self.reply().await?;
        Ok(())
    }

    async fn reply(&mut self) -> anyhow::Result<u16> {
        let mut line = String::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line).await? == 0 {
                bail!("connection closed");
            }
            let code: u16 = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .context("malformed reply")?;
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(code);
            }
        }
    }
}

fn expect(code: u16, want: u16) -> anyhow::Result<()> {
    if code == want {
        Ok(())
    } else {
        bail!("expected {want}, got {code}")
    }
}

async fn seed(
    url: &str,
    count: usize,
    to: &str,
    size: usize,
    senders: usize,
) -> anyhow::Result<()> {
    let run = format!("{:x}", rand::rng().random::<u64>());
    let alias = to.to_string();
    let make = move |i: usize| {
        let id = format!("seed-{run}-{i}@load.example");
        build_message(i, i % senders.max(1), &id, None, size, &alias)
    };
    seed_with(url, count, to, make).await
}

/// Stores COUNT messages made by `make(i)` through intake and processing,
/// as mail to `to`.
async fn seed_with(
    url: &str,
    count: usize,
    to: &str,
    make: impl Fn(usize) -> Vec<u8> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let make = Arc::new(make);
    let mut settings = Settings::load(None)?;
    settings.database.url = url.to_string();
    let store = emailin::app::open_store(&settings).await?;
    let directory = emailin::domain::DirectoryHandle::new(store.load_directory().await?);
    let processor = Processor::new(
        Arc::clone(&store),
        directory,
        Policy::load(&settings, store.as_ref()).await?,
        settings.processing.batch_max_messages,
    );
    let (intake, writer) = Intake::start(
        Arc::clone(&store),
        settings.intake.clone(),
        Some(processor.clone()),
        Arc::new(Notify::new()),
        CancellationToken::new(),
    );
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..256 {
        let (intake, next, make, to) = (
            intake.clone(),
            Arc::clone(&next),
            Arc::clone(&make),
            to.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, anyhow::Error>(());
                }
                let raw = make(i);
                let envelope = Envelope {
                    rcpt_to: vec![to.clone()],
                    ..Envelope::default()
                };
                intake
                    .submit(InboundMessage::new(Source::Import, envelope, raw))
                    .await?;
                if i % 100_000 == 0 && i > 0 {
                    eprintln!("seeded {i}");
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    drop(intake);
    writer.await?;
    processor.drain().await?;
    println!(
        "seeded {count} messages in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn idle(addr: &str, sessions: usize, pid: u32) -> anyhow::Result<()> {
    let before = peak_rss(pid).unwrap_or_default();
    let mut conns = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        conns.push(Conn::open(addr).await?);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))?
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .map(|l| l.trim_start_matches("VmRSS:").trim().to_string())
        .unwrap_or_default();
    println!(
        "{sessions} idle SMTP sessions open (EHLO done): server RSS {rss}; before: peak/now {before}"
    );
    for mut c in conns {
        let _ = c.quit().await;
    }
    Ok(())
}

async fn big(addr: &str, mb: usize, pid: u32, to: &str) -> anyhow::Result<()> {
    let raw = big_message(mb, to);
    let before = peak_rss(pid).unwrap_or_default();
    let mut conn = Conn::open(addr).await?;
    let sent = Instant::now();
    let result = conn.send("big@load.example", to, &raw).await?;
    let _ = conn.quit().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "message of {} bytes: {} in {:.2} s; server RSS before: {before}; after: {}",
        raw.len(),
        if result.is_some() { "250" } else { "refused" },
        sent.elapsed().as_secs_f64(),
        peak_rss(pid).unwrap_or_else(|| "unknown".into())
    );
    Ok(())
}

/// A message of about `mb` megabytes: one base64 attachment of random bytes.
fn big_message(mb: usize, to: &str) -> Vec<u8> {
    // Random bytes, base64 in 76-column lines: the parser has to decode them.
    // 57 raw bytes become one 76-column line plus CRLF: 78 bytes.
    let mut data = vec![0u8; mb * 1_000_000 / 78 * 57];
    rand::rng().fill(&mut data[..]);
    let encoded = base64_lines(&data);
    let mut raw = format!(
        "From: Big <big@load.example>\r\nTo: {to}\r\nSubject: {mb} MB attachment\r\nMessage-ID: <big-{:x}@load.example>\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
--b\r\nContent-Type: application/octet-stream; name=big.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n",
        rand::rng().random::<u64>()
    )
    .into_bytes();
    raw.extend_from_slice(&encoded);
    raw.extend_from_slice(b"--b--\r\n");
    raw
}

/// A multipart/mixed message of `parts` short text parts.
fn many_parts_message(parts: usize, to: &str) -> Vec<u8> {
    let mut raw = format!(
        "From: Parts <parts@load.example>\r\nTo: {to}\r\nSubject: {parts} parts\r\nMessage-ID: <parts-{:x}@load.example>\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=p\r\n\r\n",
        rand::rng().random::<u64>()
    );
    for i in 0..parts {
        raw.push_str(&format!(
            "--p\r\nContent-Type: text/plain; name=p{i}.txt\r\n\r\npart {i} of the message\r\n"
        ));
    }
    raw.push_str("--p--\r\n");
    raw.into_bytes()
}

/// Sends `raw` while another sender sends a short message every 50 ms, and
/// prints that sender's `250` latencies.
async fn others_while(
    addr: &str,
    raw: Vec<u8>,
    what: &str,
    watch_secs: u64,
    to: &str,
) -> anyhow::Result<()> {
    let done = Arc::new(AtomicBool::new(false));
    let probe = {
        let (addr, to, done) = (addr.to_string(), to.to_string(), Arc::clone(&done));
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut refused = 0usize;
            let mut i = 0usize;
            while !done.load(Ordering::Relaxed) {
                let message_id =
                    format!("probe-{:x}-{i}@load.example", rand::rng().random::<u64>());
                let message = build_message(i, 0, &message_id, None, 1024, &to);
                let sent = Instant::now();
                let mut conn = Conn::open(&addr).await?;
                match conn.send("sender0@load.example", &to, &message).await? {
                    Some(_) => latencies.push(sent.elapsed()),
                    None => refused += 1,
                }
                let _ = conn.quit().await;
                i += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            anyhow::Ok((latencies, refused))
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut conn = Conn::open(addr).await?;
    let sent = Instant::now();
    let result = conn.send("parts@load.example", to, &raw).await?;
    let big_latency = sent.elapsed();
    let _ = conn.quit().await;
    tokio::time::sleep(Duration::from_secs(watch_secs)).await;
    done.store(true, Ordering::Relaxed);
    let (mut latencies, refused) = probe.await??;
    latencies.sort();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "message ({what}), {} bytes: {} after {:.2} s; other sender: {} messages, {refused} refused, \
p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (connect to 250)",
        raw.len(),
        if result.is_some() { "250" } else { "refused" },
        big_latency.as_secs_f64(),
        latencies.len(),
        pick(0.5),
        pick(0.99),
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    );
    println!("reproduce: cargo run --release --bin bench -- parts --addr {addr} {what}");
    Ok(())
}

fn base64_lines(data: &[u8]) -> Vec<u8> {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(data.len() * 4 / 3 + data.len() / 38 + 8);
    for (i, chunk) in data.chunks(3).enumerate() {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (j, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            out.push(if j <= chunk.len() {
                TABLE[((n >> shift) & 63) as usize]
            } else {
                b'='
            });
        }
        if (i + 1) % 19 == 0 {
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
    use std::str::FromStr;

    #[test]
    fn stat_ticks_counts_past_a_command_name_with_spaces_and_parentheses() {
        let line = "4242 (tokio (w) 1) S 1 4242 4242 0 -1 4194560 500 0 0 0 1234 567 0 0 20 0 6 0";
        assert_eq!(stat_ticks(line), Some(1234 + 567));
        assert_eq!(stat_ticks("4242 (cut) S 1 2"), None);
        assert_eq!(stat_ticks(""), None);
    }

    #[test]
    fn cpu_report_sums_threads_by_name_and_counts_new_ones_from_zero() {
        let time = |total, threads: &[(u32, &str, u64)]| CpuTime {
            total,
            threads: threads
                .iter()
                .map(|&(tid, n, t)| (tid, (n.to_string(), t)))
                .collect(),
        };
        let before = time(
            100,
            &[(1, "worker", 40), (2, "worker", 50), (3, "idle", 10)],
        );
        let after = time(
            300,
            &[
                (1, "worker", 90),
                (2, "worker", 100),
                (3, "idle", 10),
                (4, "db", 30),
            ],
        );
        // 2 s over 1,000 messages; worker 1 s, db 0.3 s; idle used nothing.
        assert_eq!(
            cpu_report(&before, &after, 1000),
            "2.00 s, 2000 µs per message; by thread name, µs per message: worker 1000, db 300"
        );
    }

    /// The running test process reads its own CPU time from `/proc`.
    #[test]
    fn cpu_time_reads_this_process() {
        let Some(own) = cpu_time(std::process::id()) else {
            panic!("no /proc/self/stat");
        };
        assert!(!own.threads.is_empty());
        assert!(own.threads.values().all(|(name, _)| !name.is_empty()));
    }

    /// A real SQLite file written with checkpoints off: every commit's pages
    /// are in the WAL, named after the table or index they belong to.
    #[tokio::test]
    async fn wal_frames_are_named_after_their_tables() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/w.db", dir.path().display());
        let options = SqliteConnectOptions::from_str(&url)
            .unwrap()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .pragma("wal_autocheckpoint", "0");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        for sql in [
            "CREATE TABLE blobs (id INTEGER PRIMARY KEY, bytes BLOB NOT NULL)",
            "CREATE TABLE tags (name TEXT NOT NULL)",
            "CREATE INDEX tags_name ON tags (name)",
        ] {
            sqlx::query(sql).execute(&writer).await.unwrap();
        }
        // Ten commits of one 5,000-byte row each: every commit writes a leaf
        // of the table and the row's overflow page; one commit of one short row.
        for _ in 0..10 {
            sqlx::query("INSERT INTO blobs (bytes) VALUES (zeroblob(5000))")
                .execute(&writer)
                .await
                .unwrap();
        }
        sqlx::query("INSERT INTO tags (name) VALUES ('a')")
            .execute(&writer)
            .await
            .unwrap();

        // The writer is still open, so its WAL has not been checkpointed away.
        let report = wal_report(&url).await.unwrap();
        let frames = |name: &str| report.trees.iter().find(|t| t.0 == name).map_or(0, |t| t.1);
        assert_eq!(report.page_size, 4096);
        // Creating each table and index wrote its root page once; then every
        // commit that wrote to it:
        assert!(frames("blobs") > 10 * 2, "{}", report.render(Some(10)));
        assert_eq!(frames("tags"), 2, "{}", report.render(Some(10)));
        assert_eq!(frames("tags_name"), 2, "{}", report.render(Some(10)));
        assert_eq!(report.frames, report.trees.iter().map(|t| t.1).sum::<u64>());
        assert!(report.render(Some(10)).contains("blobs"));
        writer.close().await;
    }

    /// Frames behind the valid part, left from before the WAL restarted,
    /// carry the salts of that older WAL and are not counted.
    #[test]
    fn frames_of_an_older_wal_are_not_counted() {
        let page = 512usize;
        let mut wal = vec![0u8; 32];
        wal[0..4].copy_from_slice(&0x377f_0682u32.to_be_bytes());
        wal[8..12].copy_from_slice(&(page as u32).to_be_bytes());
        wal[16..24].copy_from_slice(b"saltsalt");
        for (pgno, salts) in [
            (3u32, b"saltsalt"),
            (3, b"saltsalt"),
            (7, b"saltsalt"),
            (9, b"oldsalts"),
        ] {
            let mut frame = vec![0u8; 24 + page];
            frame[0..4].copy_from_slice(&pgno.to_be_bytes());
            frame[8..16].copy_from_slice(salts);
            wal.extend_from_slice(&frame);
        }
        let (size, frames) = wal_frames(&wal).unwrap();
        assert_eq!(size, 512);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[&3], 2);
        assert_eq!(frames[&7], 1);
    }

    #[test]
    fn a_file_that_is_not_a_wal_is_refused() {
        assert!(wal_frames(b"SQLite format 3\0 and then some more bytes").is_err());
        assert!(wal_frames(&[]).is_err());
    }
}
