//! `events`: runc's JSON events. `--stats` prints one stats event; otherwise a stats event
//! every interval and an `oom` event whenever the OOM-kill count grows, until the container stops.

use std::time::Duration;

use super::{CommandError, ExitCode};
use crate::cli::EventsArgs;
use crate::container::{self, ContainerError};
use crate::state::Store;

pub fn events(store: &Store, a: &EventsArgs) -> Result<ExitCode, CommandError> {
    let interval = parse_duration(&a.interval)?;
    let (stats, mut ooms) = container::stats(store, &a.id)?;
    print_event(
        "stats",
        &a.id,
        Some(serde_json::to_value(&stats).unwrap_or_default()),
    );
    if a.stats {
        return Ok(0);
    }
    loop {
        std::thread::sleep(interval);
        match container::stats(store, &a.id) {
            Ok((stats, now)) => {
                if now > ooms {
                    print_event("oom", &a.id, None);
                    ooms = now;
                }
                print_event(
                    "stats",
                    &a.id,
                    Some(serde_json::to_value(&stats).unwrap_or_default()),
                );
            }
            Err(ContainerError::NotRunning) => return Ok(0),
            Err(e) => return Err(e.into()),
        }
    }
}

fn print_event(kind: &str, id: &str, data: Option<serde_json::Value>) {
    let mut ev = serde_json::json!({"type": kind, "id": id});
    if let Some(d) = data {
        ev["data"] = d;
    }
    say!("{ev}");
}

/// `5s`, `500ms`, `1m`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, CommandError> {
    let bad = || CommandError::Usage(format!("invalid duration {text:?}"));
    let (num, unit) = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((text, "s"), |i| text.split_at(i));
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5x").is_err());
    }
}
