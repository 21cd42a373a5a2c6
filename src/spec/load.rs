//! Reading a bundle's config.json.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::Deserialize;

use super::plan::Problems;

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("bundle {path}: cannot resolve")]
    Bundle {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parse {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config.json:\n{0}")]
    Invalid(Problems),
}

pub struct LoadedBundle {
    /// Absolute bundle directory.
    pub bundle: PathBuf,
    pub spec: Spec,
    /// The same config as JSON, kept in the state record.
    pub raw: serde_json::Value,
}

/// Reads `<bundle>/config.json`. The bundle path is made absolute (hooks and the state need it).
pub fn load_bundle(bundle: &Path) -> Result<LoadedBundle, SpecError> {
    let bundle = std::fs::canonicalize(bundle).map_err(|source| SpecError::Bundle {
        path: bundle.to_owned(),
        source,
    })?;
    let path = bundle.join("config.json");
    let text = std::fs::read(&path).map_err(|source| SpecError::Read {
        path: path.clone(),
        source,
    })?;
    let raw: serde_json::Value = serde_json::from_slice(&text).map_err(|e| SpecError::Parse {
        path: path.clone(),
        message: e.to_string(),
    })?;
    // Deserialized from the parsed value in place: the config is not parsed or copied twice.
    let spec = Spec::deserialize(&raw).map_err(|e| SpecError::Parse {
        path: path.clone(),
        message: e.to_string(),
    })?;
    Ok(LoadedBundle { bundle, spec, raw })
}
