//! The optional log file: a size-capped copy of the ring under `/var/log`, rotated
//! `messages` → `messages.1` → … → `messages.<keep>` (the oldest is deleted).
//!
//! `/var` may be read-only (the root image) until the state disk or a tmpfs is mounted on
//! it, so the file is opened lazily and retried every few seconds; once open, it starts with
//! everything the ring still holds, so early boot is in the file too.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::config::FileConfig;
use super::record::{Filter, Record};
use super::Logger;
use crate::console::Console;

/// How often to retry opening the file while `/var` is not writable.
const RETRY: Duration = Duration::from_secs(5);

/// Errors writing the file.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Creating, opening, writing or renaming failed.
    #[error("{what} {path}: {source}", path = path.display())]
    Io {
        /// The step.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// One record as a line: `2026-11-27T20:41:00.123456Z daemon.info berthd[12]: message`.
pub fn format_line(r: &Record) -> String {
    let time = chrono::DateTime::<chrono::Utc>::from(r.time)
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let pid = r.pid.map(|p| format!("[{p}]")).unwrap_or_default();
    format!(
        "{time} {}.{} {}{pid}: {}\n",
        r.facility, r.severity, r.name, r.message
    )
}

/// The rotating writer.
#[derive(Debug)]
pub struct Writer {
    config: FileConfig,
    path: PathBuf,
    file: Option<File>,
    size: u64,
}

impl Writer {
    /// A writer for `config` (validated: absolute path, sane sizes); nothing is opened yet.
    pub fn new(config: FileConfig) -> Self {
        let path = PathBuf::from(&config.path);
        Self {
            config,
            path,
            file: None,
            size: 0,
        }
    }

    fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> FileError + 'a {
        move |source| FileError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Opens (creating the directory and the file) for appending.
    pub fn open(&mut self) -> Result<(), FileError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(Self::io("cannot create the directory of", &self.path))?;
        }
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o640)
            .custom_flags(libc::O_CLOEXEC)
            .open(&self.path)
            .map_err(Self::io("cannot open", &self.path))?;
        self.size = file.metadata().map(|m| m.len()).unwrap_or(0);
        self.file = Some(file);
        Ok(())
    }

    /// Whether the file is open.
    pub fn is_open(&self) -> bool {
        self.file.is_some()
    }

    /// The name of rotated copy `n` (`messages.1`).
    pub fn rotated(&self, n: u32) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Shifts the copies up by one (dropping the oldest) and starts an empty file.
    pub fn rotate(&mut self) -> Result<(), FileError> {
        self.file = None;
        if self.config.keep == 0 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            let _ = std::fs::remove_file(self.rotated(self.config.keep));
            for n in (1..self.config.keep).rev() {
                let from = self.rotated(n);
                if from.exists() {
                    std::fs::rename(&from, self.rotated(n + 1))
                        .map_err(Self::io("cannot rotate", &from))?;
                }
            }
            std::fs::rename(&self.path, self.rotated(1))
                .map_err(Self::io("cannot rotate", &self.path))?;
        }
        self.open()
    }

    /// Appends one line, rotating first when it would pass `max_bytes`. On an error the file
    /// is closed (and reopened later).
    pub fn write_line(&mut self, line: &str) -> Result<(), FileError> {
        if self.file.is_none() {
            self.open()?;
        }
        let len = line.len() as u64;
        if self.size > 0 && self.size + len > self.config.max_bytes {
            self.rotate()?;
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        match file.write_all(line.as_bytes()) {
            Ok(()) => {
                self.size += len;
                Ok(())
            }
            Err(source) => {
                self.file = None;
                Err(FileError::Io {
                    what: "cannot write",
                    path: self.path.clone(),
                    source,
                })
            }
        }
    }

    /// Copies the log into the file forever.
    pub fn run(mut self, logger: &Logger, console: Console) {
        let filter = Filter {
            min_severity: self.config.min_severity,
            source: None,
        };
        let mut cursor: Option<u64> = None;
        let mut retry_at = Instant::now();
        let mut reported = false;
        loop {
            if !self.is_open() {
                if Instant::now() < retry_at {
                    std::thread::sleep(retry_at.saturating_duration_since(Instant::now()));
                    continue;
                }
                if let Err(err) = self.open() {
                    // Normal until /var is mounted: say it once, at debug level.
                    if !reported {
                        console.debug(&format!(
                            "log file: {err}; retrying every {}s",
                            RETRY.as_secs()
                        ));
                        reported = true;
                    }
                    retry_at = Instant::now() + RETRY;
                    continue;
                }
                if cursor.is_none() {
                    console.debug(&format!("log file: writing {}", self.path.display()));
                }
                reported = false;
            }
            let from = *cursor.get_or_insert_with(|| logger.first_seq());
            let batch = logger.read_from(from, &filter, 256);
            let mut result = Ok(());
            if batch.missed > 0 {
                result = self.write_line(&format!(
                    "-- {} records dropped before they could be written --\n",
                    batch.missed
                ));
            }
            for record in &batch.records {
                if result.is_err() {
                    break;
                }
                result = self.write_line(&format_line(record));
            }
            if let Err(err) = result {
                console.warn(&format!(
                    "log file: {err}; retrying in {}s",
                    RETRY.as_secs()
                ));
                retry_at = Instant::now() + RETRY;
                // Lines of this batch may be lost or repeated once; the cursor stays.
                continue;
            }
            cursor = Some(batch.next);
            if batch.records.is_empty() && batch.missed == 0 {
                logger.wait_for(batch.next, Duration::from_secs(60));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::{Facility, Origin, Severity};
    use super::*;

    #[test]
    fn line_format() {
        let mut r = Record::now(
            Origin::Syslog,
            Facility::DAEMON,
            Severity::Warning,
            "app",
            "hello",
        );
        r.time = std::time::SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        r.pid = Some(7);
        assert_eq!(
            format_line(&r),
            "2023-11-14T22:13:20.123456Z daemon.warning app[7]: hello\n"
        );
    }

    #[test]
    fn rotates_within_size_and_keeps_n() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log/messages");
        let config = FileConfig {
            path: path.display().to_string(),
            max_bytes: 100,
            keep: 2,
            ..FileConfig::default()
        };
        let mut w = Writer::new(config);
        for i in 0..20 {
            w.write_line(&format!("line {i:02} {}\n", "x".repeat(20)))
                .unwrap();
        }
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
        let current = read(path.clone());
        let one = read(w.rotated(1));
        let two = read(w.rotated(2));
        assert!(!w.rotated(3).exists());
        for text in [&current, &one, &two] {
            assert!(text.len() <= 100, "{text:?}");
        }
        // 30-byte lines, 3 per file: 18..19 current, 15..17 in .1, 12..14 in .2.
        assert!(
            current.starts_with("line 18") && current.contains("line 19"),
            "{current}"
        );
        assert!(one.starts_with("line 15"), "{one}");
        assert!(two.starts_with("line 12"), "{two}");
    }

    #[test]
    fn keep_zero_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("messages");
        let config = FileConfig {
            path: path.display().to_string(),
            max_bytes: 10,
            keep: 0,
            ..FileConfig::default()
        };
        let mut w = Writer::new(config);
        w.write_line("first line\n").unwrap();
        w.write_line("second\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second\n");
        assert!(!w.rotated(1).exists());
    }

    #[test]
    fn run_copies_the_backlog_and_new_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("messages");
        let logger: &'static Logger = Box::leak(Box::new(Logger::new(1 << 16)));
        logger.init_message(crate::console::Level::Info, "before the file");
        let w = Writer::new(FileConfig {
            path: path.display().to_string(),
            ..FileConfig::default()
        });
        std::thread::spawn(move || w.run(logger, Console::new(crate::console::Level::Error)));
        logger.init_message(crate::console::Level::Debug, "too chatty for the file");
        logger.init_message(crate::console::Level::Warn, "after");
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.contains("after") {
                assert!(
                    text.contains("daemon.info berth-init: before the file"),
                    "{text}"
                );
                assert!(!text.contains("too chatty"), "{text}");
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "file never got the record: {text:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
