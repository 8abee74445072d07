//! Which files of `../shared/corpus` are mail (shared by the corpus tests
//! and the processing benchmark).

use std::path::{Path, PathBuf};

/// The corpus folder next to the project, when it exists.
pub fn corpus_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    dir.is_dir().then_some(dir)
}

/// Mail files below `dir`, sorted: everything but expectations, licences,
/// reply-body fixtures and imaptest scripts.
pub fn mail_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    collect(dir, &mut out);
    out
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
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
