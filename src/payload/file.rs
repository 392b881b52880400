//! The file sink: JSON lines appended to one file, rotated by size. Before a line would take
//! the file past `max_bytes`, the file becomes `x.1`, `x.1` becomes `x.2`, and so on, the
//! oldest (`x.<max_files - 1>`) is deleted, and a new `x` is started: `max_files` files at
//! most. A line longer than `max_bytes` is written alone in a file of its own.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::record::Event;
use super::writer::{Deliver, Undelivered};

/// An appended, rotated JSON lines file.
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    max_files: usize,
    /// `None` after a failed write: opened again on the next try.
    out: Option<BufWriter<File>>,
    /// The file's size, written lines included.
    size: u64,
}

impl RotatingFile {
    /// Opens (creates, appends to) `path` now, so a path that cannot be written is known at
    /// start.
    pub fn open(path: &Path, max_bytes: u64, max_files: usize) -> std::io::Result<RotatingFile> {
        let mut file = RotatingFile {
            path: path.to_path_buf(),
            max_bytes,
            max_files: max_files.max(1),
            out: None,
            size: 0,
        };
        file.reopen()?;
        Ok(file)
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        let file = File::options().create(true).append(true).open(&self.path)?;
        self.size = file.metadata()?.len();
        self.out = Some(BufWriter::with_capacity(256 * 1024, file));
        Ok(())
    }

    /// Writes one line (a newline is added), rotating first when it would not fit.
    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        let length = line.len() as u64 + 1;
        if self.out.is_none() {
            self.reopen()?;
        }
        if self.size > 0 && self.size + length > self.max_bytes {
            self.rotate()?;
        }
        let out = self.out.as_mut().expect("opened above");
        out.write_all(line)?;
        out.write_all(b"\n")?;
        self.size += length;
        Ok(())
    }

    /// `x.<k>` to `x.<k+1>` from the oldest kept down, `x` to `x.1`, then a new `x`.
    fn rotate(&mut self) -> std::io::Result<()> {
        if let Some(mut out) = self.out.take() {
            out.flush()?;
        }
        let numbered = |k: usize| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{k}"));
            PathBuf::from(name)
        };
        let ignore_missing = |result: std::io::Result<()>| match result {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        };
        if self.max_files == 1 {
            ignore_missing(std::fs::remove_file(&self.path))?;
        } else {
            ignore_missing(std::fs::remove_file(numbered(self.max_files - 1)))?;
            for k in (1..self.max_files - 1).rev() {
                ignore_missing(std::fs::rename(numbered(k), numbered(k + 1)))?;
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        self.reopen()
    }
}

impl Deliver for RotatingFile {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn outcome(&self) -> &'static str {
        "written"
    }

    fn deliver(&mut self, events: Vec<Event>) -> Result<(), Undelivered> {
        let mut failed = None;
        for (index, event) in events.iter().enumerate() {
            if let Err(err) = self.write_line(&event.body) {
                failed = Some((index, err.to_string()));
                break;
            }
        }
        let flushed = match &mut self.out {
            Some(out) => out.flush().map_err(|err| err.to_string()),
            None => Ok(()),
        };
        match (failed, flushed) {
            (None, Ok(())) => Ok(()),
            (Some((index, error)), _) => {
                self.out = None;
                Err(Undelivered {
                    events: events.into_iter().skip(index).collect(),
                    error,
                })
            }
            // The lines are in a buffer that could not be written; they are lost.
            (None, Err(error)) => {
                self.out = None;
                Err(Undelivered {
                    events: Vec::new(),
                    error,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::record::{About, Kind};

    fn event(body: &str) -> Event {
        Event {
            kind: Kind::Request,
            about: std::sync::Arc::new(About {
                request_id: "r".into(),
                trace_id: None,
                model: "m".into(),
                version: None,
            }),
            time: String::new(),
            body: bytes::Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    fn read(dir: &Path, name: &str) -> Option<String> {
        std::fs::read_to_string(dir.join(name)).ok()
    }

    #[test]
    fn files_rotate_by_size_and_the_oldest_goes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.jsonl");
        // Two 9-byte lines fit in 20 bytes; a third starts a new file.
        let mut file = RotatingFile::open(&path, 20, 3).unwrap();
        let lines: Vec<String> = (0..7).map(|i| format!("line-{i:03}")).collect();
        for line in &lines {
            assert!(file.deliver(vec![event(line)]).is_ok());
        }
        assert_eq!(read(dir.path(), "p.jsonl").unwrap(), "line-006\n");
        assert_eq!(
            read(dir.path(), "p.jsonl.1").unwrap(),
            "line-004\nline-005\n"
        );
        assert_eq!(
            read(dir.path(), "p.jsonl.2").unwrap(),
            "line-002\nline-003\n"
        );
        assert_eq!(read(dir.path(), "p.jsonl.3"), None);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
    }

    #[test]
    fn one_file_is_started_again_and_a_long_line_gets_a_file_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.jsonl");
        std::fs::write(&path, "old\n").unwrap();
        let mut file = RotatingFile::open(&path, 10, 1).unwrap();
        file.deliver(vec![event("a-long-line-indeed"), event("b")])
            .ok()
            .unwrap();
        assert_eq!(read(dir.path(), "p.jsonl").unwrap(), "b\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_file_that_cannot_be_written_gives_back_its_lines() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let path = sub.join("p.jsonl");
        let mut file = RotatingFile::open(&path, 1000, 2).unwrap();
        file.out = None;
        std::fs::remove_dir_all(&sub).unwrap();
        let failed = file.deliver(vec![event("a"), event("b")]).err().unwrap();
        assert_eq!(failed.events.len(), 2);
        std::fs::create_dir(&sub).unwrap();
        assert!(file.deliver(failed.events).is_ok());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\n");
        assert!(RotatingFile::open(&dir.path().join("no/p.jsonl"), 10, 1).is_err());
    }
}
