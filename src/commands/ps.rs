//! `ps`: the container's pids as JSON, or ps(1)'s output filtered to them.

use std::process::Command;

use super::{CommandError, ExitCode};
use crate::cli::{ListFormat, PsArgs};
use crate::container;
use crate::state::Store;

pub fn ps(store: &Store, a: &PsArgs) -> Result<ExitCode, CommandError> {
    let pids = container::pids(store, &a.id)?;
    if a.format == ListFormat::Json {
        say!("{}", serde_json::to_string(&pids).unwrap_or_default());
        return Ok(0);
    }
    let args = if a.ps_args.is_empty() {
        vec!["-ef".to_owned()]
    } else {
        a.ps_args.clone()
    };
    let out = Command::new("ps")
        .args(&args)
        .output()
        .map_err(|source| CommandError::Io {
            op: "run",
            path: "ps".into(),
            source,
        })?;
    if !out.status.success() {
        return Err(CommandError::Usage(format!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let (header, rows) = filter_ps(&text, &pids)?;
    say!("{header}");
    for row in rows {
        say!("{row}");
    }
    Ok(0)
}

/// Keeps the header and the rows whose PID column is one of `pids`.
pub fn filter_ps<'a>(text: &'a str, pids: &[i32]) -> Result<(&'a str, Vec<&'a str>), CommandError> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| CommandError::Usage("ps output has no PID column".into()))?;
    let rows = lines
        .filter(|l| {
            l.split_whitespace()
                .nth(col)
                .and_then(|p| p.parse::<i32>().ok())
                .is_some_and(|p| pids.contains(&p))
        })
        .collect();
    Ok((header, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_container_rows() {
        let text = "UID PID PPID C STIME TTY TIME CMD\nroot 1 0 0 00:00 ? 00:00:00 init\nroot 42 1 0 00:00 ? 00:00:00 sleep\n";
        let (h, rows) = filter_ps(text, &[42]).unwrap();
        assert!(h.starts_with("UID PID"));
        assert_eq!(rows, vec!["root 42 1 0 00:00 ? 00:00:00 sleep"]);
    }
}
