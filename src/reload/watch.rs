//! The file watcher for local model directories (`notify`), debounced: a change triggers a
//! check only once the directory has been quiet for `watch_debounce`. The pipeline then copies
//! the directory and compares a snapshot of names, sizes and modification times taken before
//! and after the copy; if anything moved in between, the copy is discarded and retried. So a
//! directory that is still being written is never loaded (see README, "Hot reload").

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::Triggers;

/// Watches `dir` and requests a check after each burst of changes. Returns the watcher, which
/// stops watching when dropped.
pub fn spawn(
    dir: &Path,
    debounce: Duration,
    triggers: Triggers,
) -> notify::Result<notify::RecommendedWatcher> {
    let (events_tx, mut events_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if !event.kind.is_access() {
                let _ = events_tx.send(());
            }
        }
    })?;
    watcher.watch(dir, RecursiveMode::Recursive)?;
    // Replacing the directory itself (rename over it) is only seen from the parent.
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        let _ = watcher.watch(parent, RecursiveMode::NonRecursive);
    }
    let watched = dir.to_path_buf();
    tokio::spawn(async move {
        while events_rx.recv().await.is_some() {
            // Wait until no event arrived for a whole debounce period.
            loop {
                match tokio::time::timeout(debounce, events_rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            tracing::info!(dir = %watched.display(), "model directory changed; checking it");
            triggers.request(super::Trigger::Watch);
        }
    });
    Ok(watcher)
}

/// Names, sizes and modification times of every file under `dir`, sorted; two equal
/// snapshots around a copy mean nothing was written meanwhile. A symbolic link counts as its
/// target's path and, for a file, the file's size and time; links are never descended (what a
/// link inside the directory points at is walked where it really is, and the copy refuses any
/// other link), so a link loop cannot make this endless.
pub fn snapshot(dir: &Path) -> std::io::Result<Vec<(PathBuf, u64, SystemTime)>> {
    let mut entries = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current)? {
            let entry = entry?;
            let metadata = std::fs::symlink_metadata(entry.path())?;
            if metadata.is_dir() {
                stack.push(entry.path());
            } else if metadata.is_symlink() {
                let target = std::fs::read_link(entry.path())?;
                let (len, modified) = match std::fs::metadata(entry.path()) {
                    Ok(file) if file.is_file() => (file.len(), file.modified()?),
                    _ => (0, SystemTime::UNIX_EPOCH),
                };
                entries.push((entry.path().join(target), len, modified));
            } else {
                entries.push((entry.path(), metadata.len(), metadata.modified()?));
            }
        }
    }
    entries.sort();
    Ok(entries)
}
