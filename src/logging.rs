//! The `log` backend: runc-style lines to `--log` (or stderr), as text or JSON.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::cli::LogFormat;
use crate::state::rfc3339_now;

struct Logger {
    sink: Mutex<Option<File>>,
    format: LogFormat,
}

/// One log line, as runc (logrus) writes it.
pub fn format_line(format: LogFormat, level: Level, msg: &str, time: &str) -> String {
    let level = level.as_str().to_ascii_lowercase();
    match format {
        LogFormat::Json => format!(
            "{}\n",
            serde_json::json!({"level": level, "msg": msg, "time": time})
        ),
        LogFormat::Text => format!("time={time:?} level={level} msg={msg:?}\n"),
    }
}

impl Log for Logger {
    fn enabled(&self, _: &Metadata) -> bool {
        true
    }

    fn log(&self, record: &Record) {
        let line = format_line(
            self.format,
            record.level(),
            &record.args().to_string(),
            &rfc3339_now(),
        );
        if let Ok(mut sink) = self.sink.lock() {
            match sink.as_mut() {
                Some(f) => {
                    let _ = f.write_all(line.as_bytes());
                }
                None => {
                    let _ = std::io::stderr().write_all(line.as_bytes());
                }
            }
        }
    }

    fn flush(&self) {}
}

/// Installs the logger. A log file that cannot be opened falls back to stderr (and says so).
pub fn init(path: Option<&Path>, format: LogFormat, debug: bool) {
    let mut warning = None;
    let sink = path.and_then(
        |p| match OpenOptions::new().create(true).append(true).open(p) {
            Ok(f) => Some(f),
            Err(e) => {
                warning = Some(format!("open log file {}: {e}", p.display()));
                None
            }
        },
    );
    let logger = Box::new(Logger {
        sink: Mutex::new(sink),
        format,
    });
    if log::set_boxed_logger(logger).is_ok() {
        log::set_max_level(if debug {
            LevelFilter::Debug
        } else {
            LevelFilter::Warn
        });
    }
    if let Some(w) = warning {
        log::warn!("{w}");
    }
}

/// Whether log lines go to a file (then the final error is also printed on stderr).
pub fn has_file(path: Option<&Path>) -> bool {
    path.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_look_like_runc() {
        let l = format_line(
            LogFormat::Json,
            Level::Error,
            "container \"x\" does not exist",
            "T",
        );
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "container \"x\" does not exist");
        assert_eq!(v["time"], "T");
    }
}
