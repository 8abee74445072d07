//! Build-time facts for the crate and its tests.
//!
//! `sqlx::migrate!` embeds `migrations/` at compile time: rebuild when a
//! migration is added, changed or removed, not only when Rust code changes.
//!
//! The tests that need PostgreSQL, Dovecot or Chromium are marked ignored
//! (reported as such, not as passed) on a machine without them:
//! `emailin_no_postgres` when `DATABASE_URL` is unset, `emailin_no_dovecot`
//! and `emailin_no_chromium` when the binaries are not installed. In CI
//! (`CI=true`) none is set, so a missing server fails.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo::rustc-check-cfg=cfg(emailin_no_postgres)");
    println!("cargo::rustc-check-cfg=cfg(emailin_no_dovecot)");
    println!("cargo::rustc-check-cfg=cfg(emailin_no_chromium)");
    println!("cargo:rerun-if-env-changed=DATABASE_URL");
    println!("cargo:rerun-if-env-changed=CI");
    let dovecot = ["/usr/sbin/dovecot", "/usr/local/sbin/dovecot"];
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromedriver"];
    for dir in ["/usr/sbin", "/usr/local/sbin", "/usr/bin"] {
        if std::path::Path::new(dir).is_dir() {
            println!("cargo:rerun-if-changed={dir}");
        }
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        return;
    }
    if !std::env::var("DATABASE_URL").is_ok_and(|v| !v.is_empty()) {
        println!("cargo:rustc-cfg=emailin_no_postgres");
    }
    if !dovecot.iter().any(|p| std::path::Path::new(p).exists()) {
        println!("cargo:rustc-cfg=emailin_no_dovecot");
    }
    if !chromium.iter().all(|p| std::path::Path::new(p).exists()) {
        println!("cargo:rustc-cfg=emailin_no_chromium");
    }
}
