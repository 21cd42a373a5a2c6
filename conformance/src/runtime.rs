//! Which runtime binary the suite drives.

use std::env;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Environment variable naming the runtime under test.
pub const RUNTIME_ENV: &str = "HUSK_RUNTIME";

/// The runtime binary under test, resolved once per test binary.
///
/// Panics with instructions when the binary cannot be found, so a missing build
/// shows up as one clear message instead of a wall of spawn errors.
pub fn runtime_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(
        || match resolve(env::var_os(RUNTIME_ENV).map(PathBuf::from)) {
            Ok(path) => path,
            Err(message) => panic!("{message}"),
        },
    )
}

/// A short name for messages: the binary's file name.
pub fn runtime_name() -> String {
    runtime_path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| runtime_path().display().to_string())
}

/// Set to `1` to run the tests of `tests/husk_only.rs` against any runtime
/// (to see which of them another runtime fails).
pub const STRICT_ENV: &str = "HUSK_CONFORMANCE_STRICT";

/// Whether tests that only husk is expected to pass should run: the runtime
/// is husk (its file name starts with `husk`), or [`STRICT_ENV`] is `1`.
/// Otherwise prints a skip notice naming `test` and returns false.
pub fn husk_only(test: &str) -> bool {
    let strict = env::var(STRICT_ENV).is_ok_and(|v| v == "1");
    if strict || runtime_name().starts_with("husk") {
        return true;
    }
    eprintln!(
        "skipping {test}: husk-only test, runtime is {} (set {STRICT_ENV}=1 to run it anyway)",
        runtime_name()
    );
    false
}

fn default_runtime() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/husk")
}

fn resolve(from_env: Option<PathBuf>) -> Result<PathBuf, String> {
    let Some(requested) = from_env.filter(|p| !p.as_os_str().is_empty()) else {
        let default = default_runtime();
        return if default.is_file() {
            Ok(absolute(&default))
        } else {
            Err(format!(
                "runtime under test not found at {}: build husk first (`cargo build` in the workspace root), \
                 or set {RUNTIME_ENV} to a runtime binary, e.g. {RUNTIME_ENV}=$(which runc)",
                default.display()
            ))
        };
    };
    if requested.components().count() == 1 && !requested.is_file() {
        // A bare name such as `runc`: look it up in PATH like a shell would.
        let found = env::var_os("PATH").and_then(|paths| {
            env::split_paths(&paths)
                .map(|dir| dir.join(&requested))
                .find(|candidate| candidate.is_file())
        });
        return found.ok_or_else(|| {
            format!(
                "{RUNTIME_ENV}={} was not found in PATH",
                requested.display()
            )
        });
    }
    if requested.is_file() {
        Ok(absolute(&requested))
    } else {
        Err(format!(
            "{RUNTIME_ENV}={} does not name an existing file",
            requested.display()
        ))
    }
}

fn absolute(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_missing_path_is_an_error_naming_it() {
        let err = resolve(Some(PathBuf::from("/nonexistent/dir/husk"))).unwrap_err();
        assert!(err.contains("/nonexistent/dir/husk"), "{err}");
    }

    #[test]
    fn bare_name_is_looked_up_in_path() {
        let found = resolve(Some(PathBuf::from("sh"))).unwrap();
        assert!(
            found.is_absolute() && found.ends_with("sh"),
            "{}",
            found.display()
        );
    }

    #[test]
    fn unknown_bare_name_is_an_error() {
        let err = resolve(Some(PathBuf::from("no-such-runtime-hc"))).unwrap_err();
        assert!(err.contains("not found in PATH"), "{err}");
    }
}
