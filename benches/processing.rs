//! Per-message processing without I/O (parse + route + thread keys, i.e.
//! `emailin::ingest::plan`) next to bare mail-parser parsing, over every
//! mail of `../shared/corpus`.
//!
//!     cargo bench --bench processing
//!
//! Criterion prints time per pass over the corpus and the throughput in
//! messages/s (group "messages") and bytes/s (group "bytes"); the ratio of
//! the two rows in a group is what emailin's own work costs on top of parsing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use emailin::config::Settings;
use emailin::domain::Directory;
use emailin::ingest::{mbox, plan};
use mail_parser::MessageParser;

fn corpus() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    let mut files = Vec::new();
    collect(&dir, &mut files);
    files
        .iter()
        .filter_map(|f| std::fs::read(f).ok())
        .flat_map(|data| mbox::split(&data))
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for path in entries.flatten().map(|e| e.path()) {
        let text = path.to_string_lossy().to_string();
        if path.is_dir() {
            if !text.ends_with("email-reply-trimmer") {
                collect(&path, out);
            }
            continue;
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default();
        let skip = ["json", "yml", "txt", "md", "gitattributes", "MIT"].contains(&ext)
            || ["README", "COPYING", "LICENSE", "SOURCE", "."]
                .iter()
                .any(|p| name.starts_with(p))
            || (text.contains("dovecot-imaptest") && ext != "mbox");
        if !skip {
            out.push(path);
        }
    }
}

fn bench(c: &mut Criterion) {
    let messages = corpus();
    if messages.is_empty() {
        eprintln!("skipped: ../shared/corpus not found");
        return;
    }
    let bytes: usize = messages.iter().map(Vec::len).sum();
    eprintln!(
        "corpus: {} messages, {:.1} MB",
        messages.len(),
        bytes as f64 / 1e6
    );
    let settings = Settings::defaults().expect("defaults");
    let directory = Directory::from_config(&settings.pipelines, &settings.aliases);
    let rcpt = vec!["service@localhost".to_string()];

    for (group_name, throughput) in [
        ("messages", Throughput::Elements(messages.len() as u64)),
        ("bytes", Throughput::Bytes(bytes as u64)),
    ] {
        let mut group = c.benchmark_group(group_name);
        group
            .throughput(throughput)
            .sample_size(10)
            .measurement_time(Duration::from_secs(8));
        group.bench_function("mail-parser parse", |b| {
            b.iter(|| {
                for m in &messages {
                    std::hint::black_box(MessageParser::default().parse(m.as_slice()));
                }
            })
        });
        group.bench_function("emailin plan (parse+route+thread keys)", |b| {
            b.iter(|| {
                for m in &messages {
                    let _ = std::hint::black_box(plan(m, &directory, &rcpt));
                }
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
