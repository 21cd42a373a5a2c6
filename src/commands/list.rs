//! `list`: a table like runc's, or JSON.

use super::{CommandError, ExitCode};
use crate::cli::{ListArgs, ListFormat};
use crate::container::Container;
use crate::state::Store;

pub fn list(store: &Store, a: &ListArgs) -> Result<ExitCode, CommandError> {
    let containers: Vec<Container> = store
        .ids()?
        .iter()
        .filter_map(|id| Container::load(store, id).ok())
        .collect();
    if a.quiet {
        for c in &containers {
            say!("{}", c.record.id);
        }
        return Ok(0);
    }
    match a.format {
        ListFormat::Json => {
            let items: Vec<serde_json::Value> =
                containers.iter().map(Container::oci_state).collect();
            say!("{}", serde_json::Value::Array(items));
        }
        ListFormat::Table => {
            say!(
                "{:<20} {:<8} {:<10} {:<40} {:<31} OWNER",
                "ID",
                "PID",
                "STATUS",
                "BUNDLE",
                "CREATED"
            );
            for c in &containers {
                let s = c.oci_state();
                say!(
                    "{:<20} {:<8} {:<10} {:<40} {:<31} {}",
                    c.record.id,
                    s["pid"].as_i64().unwrap_or(0),
                    c.status.as_str(),
                    c.record.bundle.display(),
                    c.record.created,
                    c.record.owner
                );
            }
        }
    }
    Ok(0)
}
