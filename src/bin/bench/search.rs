//! `bench search`: search latency over MESSAGES stored messages.
//!
//! Seeds MESSAGES messages through intake and processing (threads of
//! five: one record and four replies), each with twenty words drawn from a
//! vocabulary of 5,000 with a Zipf-like (log-uniform) skew and one of 40
//! Japanese business sentences, then lets the indexer index everything,
//! then asks QUERIES searches of each kind the way the API does (the
//! ranked first page of 50, then those records' rows) and prints p50/p99.

use std::sync::Arc;
use std::time::{Duration, Instant};

use emailin::config::Settings;
use emailin::domain::search::query_parts;
use emailin::store::Store;
use rand::{Rng, SeedableRng};

const SYLLABLES: &[&str] = &[
    "ka", "ri", "to", "me", "su", "no", "ha", "ru", "ko", "na", "mi", "te", "sa", "lo", "pe", "di",
    "bu", "ga", "ze", "fo",
];

/// The word of rank `k` (0 is the most frequent).
fn word(k: usize) -> String {
    let mut k = k + SYLLABLES.len();
    let mut w = String::new();
    while k > 0 {
        w.push_str(SYLLABLES[k % SYLLABLES.len()]);
        k /= SYLLABLES.len();
    }
    w
}

const VOCABULARY: usize = 5_000;

const JAPANESE: &[&str] = &[
    "見積をお願いします",
    "納期を教えてください",
    "請求書が届いていません",
    "注文を変更したいです",
    "修理の依頼です",
    "返品の手続きについて",
    "プリンターが接続できません",
    "パスワードを再設定したい",
    "契約の更新について",
    "支払い方法の確認",
    "配送状況を知りたい",
    "製品の在庫はありますか",
    "会議の日程調整",
    "資料を送付します",
    "価格表をください",
    "保証期間について",
    "サポートの延長",
    "ログインできません",
    "エラーが表示されます",
    "データが消えました",
    "アカウントの削除",
    "領収書の発行",
    "住所の変更",
    "担当者を変更してください",
    "追加の注文です",
    "キャンセルしたい",
    "動作が遅いです",
    "画面が真っ白です",
    "設定方法を教えて",
    "マニュアルはありますか",
    "訪問の予約",
    "電話で相談したい",
    "見積書の再発行",
    "納品書が必要です",
    "部品の交換",
    "料金プランの変更",
    "請求金額が違います",
    "メールが届きません",
    "ファイルが開けません",
    "更新後に不具合",
];

/// A log-uniform rank below `n`: rank k is drawn about 1/k as often.
fn skewed(rng: &mut impl Rng, n: usize) -> usize {
    let x: f64 = rng.random::<f64>() * (n as f64).ln();
    (x.exp() as usize).saturating_sub(1).min(n - 1)
}

fn message(i: usize, to: &str, run: &str) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(i as u64);
    let words: Vec<String> = (0..20)
        .map(|_| word(skewed(&mut rng, VOCABULARY)))
        .collect();
    let japanese = JAPANESE[skewed(&mut rng, JAPANESE.len())];
    let thread = i / 5;
    let parent = (!i.is_multiple_of(5)).then(|| format!("<s{run}-{}@load.example>", i - 1));
    let mut m = format!(
        "From: Sender {s} <sender{s}@load.example>\r\nTo: {to}\r\nSubject: {title} {thread}\r\n\
         Message-ID: <s{run}-{i}@load.example>\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n",
        s = thread % 5_000,
        title = word(skewed(&mut rng, VOCABULARY)),
    );
    if let Some(p) = &parent {
        m.push_str(&format!("In-Reply-To: {p}\r\nReferences: {p}\r\n"));
    }
    m.push_str(&format!("\r\n{}\r\n{japanese}。\r\n", words.join(" ")));
    m.into_bytes()
}

pub async fn run(url: &str, messages: usize, queries: usize) -> anyhow::Result<()> {
    let run = format!("{:x}", rand::rng().random::<u32>());
    let to = "sales@localhost";
    if messages > 0 {
        let r = run.clone();
        super::seed_with(url, messages, to, move |i| message(i, to, &r)).await?;
    }
    let mut settings = Settings::load(None)?;
    settings.database.url = url.to_string();
    let store: Arc<dyn Store> = emailin::app::open_store(&settings).await?;
    let start = Instant::now();
    let indexed = emailin::search::index_all(store.as_ref()).await?;
    println!(
        "indexed {indexed} queued records and messages in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let kinds: Vec<(&str, Vec<String>)> = vec![
        (
            "rare word",
            (0..queries).map(|k| word(4_000 + k % 900)).collect(),
        ),
        (
            "mid word",
            (0..queries).map(|k| word(200 + k % 100)).collect(),
        ),
        ("common word", (0..queries).map(|k| word(k % 5)).collect()),
        (
            "two words",
            (0..queries)
                .map(|k| format!("{} {}", word(50 + k % 50), word(300 + k % 50)))
                .collect(),
        ),
        (
            "word prefix",
            (0..queries)
                .map(|k| word(1_000 + k % 500)[..4].to_string())
                .collect(),
        ),
        (
            "Japanese 2 chars (見積, 納期 …)",
            (0..queries)
                .map(|k| ["見積", "納期", "請求", "接続", "修理"][k % 5].to_string())
                .collect(),
        ),
        (
            "Japanese 3+ chars (請求書 …)",
            (0..queries)
                .map(|k| ["請求書", "見積書", "パスワード", "領収書"][k % 4].to_string())
                .collect(),
        ),
    ];
    let mut all = Vec::new();
    for (kind, texts) in &kinds {
        let mut times = Vec::with_capacity(texts.len());
        let mut found = 0usize;
        for text in texts {
            let t = Instant::now();
            let hits = store
                .search_records(&query_parts(text), None, 51, 0)
                .await?;
            let ids: Vec<_> = hits.iter().take(50).map(|h| h.record_id).collect();
            let rows = store.records_by_ids(&ids).await?;
            times.push(t.elapsed());
            found += rows.len();
        }
        times.sort();
        println!(
            "{kind}: p50 {:.2} ms, p99 {:.2} ms ({} queries, {:.1} records on the first page on average)",
            ms(pick(&times, 0.5)),
            ms(pick(&times, 0.99)),
            times.len(),
            found as f64 / times.len().max(1) as f64
        );
        all.extend(times);
    }
    all.sort();
    println!(
        "all {} searches: p50 {:.2} ms, p99 {:.2} ms",
        all.len(),
        ms(pick(&all, 0.5)),
        ms(pick(&all, 0.99))
    );
    println!(
        "reproduce: cargo run --release --bin bench -- search --database-url {url} --messages {messages} --queries {queries}"
    );
    Ok(())
}

fn pick(times: &[Duration], q: f64) -> Duration {
    times[((times.len() as f64 - 1.0) * q).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
