//! The standalone OCI hook: runc/crun (or `husk hook network`) run it at createRuntime and
//! poststop with the container state on stdin. The record lives in `<state_dir>/hooks/<id>.json`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

use crate::{NetError, NetworkRecord, Target, names, parse_annotations, setup, teardown};

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("unknown hook stage {0:?} (expected createRuntime or poststop)")]
    UnknownStage(String),
    #[error("parse the container state from stdin")]
    ParseState {
        #[source]
        source: serde_json::Error,
    },
    #[error("read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parse {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("remove {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the container state of {id} has no pid")]
    NoPid { id: String },
    #[error("{path} has no root.path")]
    NoRoot { path: PathBuf },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookStage {
    CreateRuntime,
    Poststop,
}

impl FromStr for HookStage {
    type Err = HookError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "createRuntime" => Ok(HookStage::CreateRuntime),
            "poststop" => Ok(HookStage::Poststop),
            other => Err(HookError::UnknownStage(other.to_string())),
        }
    }
}

/// The OCI state document, the fields we use.
#[derive(Deserialize)]
struct State {
    id: String,
    #[serde(default)]
    pid: Option<i32>,
    bundle: PathBuf,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

#[derive(Deserialize)]
struct Config {
    #[serde(default)]
    root: Option<Root>,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

#[derive(Deserialize)]
struct Root {
    path: PathBuf,
}

pub fn record_path(state_dir: &Path, id: &str) -> PathBuf {
    state_dir.join("hooks").join(format!("{id}.json"))
}

pub fn run_hook(stage: HookStage, state_json: &[u8], state_dir: &Path) -> Result<(), NetError> {
    let state: State =
        serde_json::from_slice(state_json).map_err(|source| HookError::ParseState { source })?;
    if !names::valid_container_id(&state.id) {
        return Err(NetError::InvalidContainerId(state.id));
    }
    let path = record_path(state_dir, &state.id);
    match stage {
        HookStage::CreateRuntime => create(state, state_dir, &path),
        HookStage::Poststop => poststop(state_dir, &path),
    }
}

fn create(state: State, state_dir: &Path, record_file: &Path) -> Result<(), NetError> {
    let config_path = state.bundle.join("config.json");
    let text = std::fs::read(&config_path).map_err(|source| HookError::Read {
        path: config_path.clone(),
        source,
    })?;
    let config: Config = serde_json::from_slice(&text).map_err(|source| HookError::Parse {
        path: config_path.clone(),
        source,
    })?;
    // The state's annotations are the spec's; config.json fills in when a runtime omits them.
    let mut annotations = config.annotations;
    annotations.extend(state.annotations);
    let Some(req) = parse_annotations(&annotations)? else {
        return Ok(());
    };
    let pid = state.pid.ok_or_else(|| HookError::NoPid {
        id: state.id.clone(),
    })?;
    let root = config.root.ok_or_else(|| HookError::NoRoot {
        path: config_path.clone(),
    })?;
    let target = Target {
        container_id: state.id.clone(),
        pid,
        rootfs: state.bundle.join(root.path),
        owner_dir: None,
    };
    // Recorded before anything is built: if the runtime kills this hook during setup,
    // poststop still finds the container and its teardown recovers the rest from the lease.
    save(
        record_file,
        &NetworkRecord::empty(&req, &target.container_id),
    )?;
    let record = setup(&req, &target, state_dir)?;
    if let Err(e) = save(record_file, &record) {
        // Without the record nothing could tear it down later: undo now.
        let _ = teardown(&record, state_dir);
        return Err(e.into());
    }
    Ok(())
}

fn save(path: &Path, record: &NetworkRecord) -> Result<(), HookError> {
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|source| HookError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn poststop(state_dir: &Path, record_file: &Path) -> Result<(), NetError> {
    let text = match std::fs::read(record_file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(HookError::Read {
                path: record_file.to_path_buf(),
                source,
            }
            .into());
        }
    };
    let record: NetworkRecord =
        serde_json::from_slice(&text).map_err(|source| HookError::Parse {
            path: record_file.to_path_buf(),
            source,
        })?;
    // On failure the record stays, so running poststop again retries.
    teardown(&record, state_dir)?;
    match std::fs::remove_file(record_file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(HookError::Remove {
            path: record_file.to_path_buf(),
            source: e,
        }
        .into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages() {
        assert_eq!(
            "createRuntime".parse::<HookStage>().unwrap(),
            HookStage::CreateRuntime
        );
        assert_eq!(
            "poststop".parse::<HookStage>().unwrap(),
            HookStage::Poststop
        );
        assert!("prestart".parse::<HookStage>().is_err());
    }

    #[test]
    fn bad_state_is_an_error() {
        let dir = std::env::temp_dir();
        let e = run_hook(HookStage::Poststop, b"not json", &dir).unwrap_err();
        assert!(e.to_string().contains("parse the container state"), "{e}");
        let e = run_hook(HookStage::Poststop, br#"{"id":"../x","bundle":"/"}"#, &dir).unwrap_err();
        assert!(matches!(e, NetError::InvalidContainerId(_)), "{e}");
    }

    #[test]
    fn poststop_without_record_is_nothing_to_do() {
        let dir = std::env::temp_dir().join(format!("husk-net-hook-{}", std::process::id()));
        run_hook(
            HookStage::Poststop,
            br#"{"id":"nothing-here","bundle":"/"}"#,
            &dir,
        )
        .unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn create_without_our_annotations_does_nothing() {
        let dir = std::env::temp_dir().join(format!("husk-net-hook-create-{}", std::process::id()));
        let bundle = dir.join("bundle");
        std::fs::create_dir_all(&bundle).unwrap();
        std::fs::write(
            bundle.join("config.json"),
            r#"{"root":{"path":"rootfs"},"annotations":{"a":"b"}}"#,
        )
        .unwrap();
        let state = format!(r#"{{"id":"c1","pid":1,"bundle":{:?}}}"#, bundle);
        run_hook(
            HookStage::CreateRuntime,
            state.as_bytes(),
            &dir.join("state"),
        )
        .unwrap();
        assert!(!dir.join("state").exists());
        // A bad annotation in config.json is reported.
        std::fs::write(
            bundle.join("config.json"),
            r#"{"root":{"path":"rootfs"},"annotations":{"io.husk.net.nat":"maybe"}}"#,
        )
        .unwrap();
        let e = run_hook(
            HookStage::CreateRuntime,
            state.as_bytes(),
            &dir.join("state"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("io.husk.net.nat"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
