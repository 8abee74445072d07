//! Per-message processing without I/O (parse + classify + route + thread keys, i.e.
//! `emailin::ingest::plan`) next to bare mail-parser parsing, and the MIME
//! shape check processing runs before both, over every
//! mail of `../shared/corpus`.
//!
//!     cargo bench --bench processing
//!
//! Criterion prints time per pass over the corpus and the throughput in
//! messages/s (group "messages") and bytes/s (group "bytes"); the ratio of
//! the two rows in a group is what emailin's own work costs on top of parsing.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use emailin::config::Settings;
use emailin::domain::Directory;
use emailin::ingest::{mbox, plan};
use mail_parser::MessageParser;

#[path = "../tests/support/corpus_files.rs"]
mod corpus_files;

fn corpus() -> Vec<Vec<u8>> {
    let Some(dir) = corpus_files::corpus_dir() else {
        return Vec::new();
    };
    corpus_files::mail_files(&dir)
        .iter()
        .filter_map(|f| std::fs::read(f).ok())
        .flat_map(|data| mbox::split(&data))
        .collect()
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
        group.bench_function("emailin plan (parse+classify+route+thread keys)", |b| {
            b.iter(|| {
                for m in &messages {
                    let _ = std::hint::black_box(plan(m, &directory, &rcpt, false, false));
                }
            })
        });
        let limits = emailin::ingest::shape::ShapeLimits {
            max_parts: settings.processing.max_mime_parts,
            max_depth: settings.processing.max_mime_depth,
        };
        group.bench_function("emailin MIME shape check (parts, depth)", |b| {
            b.iter(|| {
                for m in &messages {
                    std::hint::black_box(limits.check(m));
                }
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
