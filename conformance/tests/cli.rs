//! The non-lifecycle verbs engines call: `spec`, `features`, `--version`.

use std::fs;

use husk_conformance::{Config, Sandbox};
use serde_json::Value;

fn read_json(path: &std::path::Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON ({e}):\n{text}", path.display()))
}

fn namespace_types(config: &Value) -> Vec<String> {
    config["linux"]["namespaces"]
        .as_array()
        .map(|ns| {
            ns.iter()
                .filter_map(|n| n["type"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn spec_writes_a_runnable_default_config() {
    let sb = Sandbox::new("spec-default");
    let bundle = sb.bundle().to_string_lossy().into_owned();
    sb.runtime(&["spec", "--bundle", &bundle]).assert_success();
    let spec = read_json(&sb.bundle().join("config.json"));
    assert!(
        spec["ociVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "{spec}"
    );
    assert_eq!(spec["root"]["path"], "rootfs", "{spec}");
    assert!(
        spec["process"]["args"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{spec}"
    );
    let types = namespace_types(&spec);
    for kind in ["pid", "mount", "network", "ipc", "uts"] {
        assert!(types.iter().any(|t| t == kind), "{kind} missing: {types:?}");
    }
    // The starter config runs as is once it stops asking for a terminal.
    let config = Config::from_json(spec).terminal(false).sh("echo spec-ok");
    sb.run(&config).assert_success().assert_stdout_eq("spec-ok");
}

#[test]
fn spec_without_bundle_writes_to_the_current_dir() {
    let sb = Sandbox::new("spec-cwd");
    let dir = sb.host_dir("cwd");
    sb.exec(sb.call(&["spec"]).current_dir(&dir), "spec")
        .assert_success();
    assert!(read_json(&dir.join("config.json"))["ociVersion"].is_string());
}

#[test]
fn spec_refuses_to_overwrite_config_json() {
    let sb = Sandbox::new("spec-exists");
    let bundle = sb.bundle().to_string_lossy().into_owned();
    fs::write(sb.bundle().join("config.json"), "{\"mine\": true}").expect("write");
    sb.runtime(&["spec", "--bundle", &bundle])
        .assert_failure()
        .assert_stderr_contains("exists");
    assert_eq!(
        fs::read_to_string(sb.bundle().join("config.json")).unwrap_or_default(),
        "{\"mine\": true}"
    );
}

#[test]
fn spec_rootless_uses_a_user_namespace() {
    let sb = Sandbox::new("spec-rootless");
    let bundle = sb.bundle().to_string_lossy().into_owned();
    sb.runtime(&["spec", "--rootless", "--bundle", &bundle])
        .assert_success();
    let spec = read_json(&sb.bundle().join("config.json"));
    let types = namespace_types(&spec);
    assert!(types.iter().any(|t| t == "user"), "{types:?}");
    assert!(
        !types.iter().any(|t| t == "network"),
        "rootless cannot configure a new netns: {types:?}"
    );
    for map in ["uidMappings", "gidMappings"] {
        assert!(
            spec["linux"][map].as_array().is_some_and(|m| !m.is_empty()),
            "{map}: {spec}"
        );
    }
}

#[test]
fn features_reports_hooks_namespaces_and_versions() {
    let sb = Sandbox::new("features");
    let out = sb.runtime(&["features"]);
    out.assert_success();
    let features: Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{out}"));
    for key in ["ociVersionMin", "ociVersionMax"] {
        assert!(
            features[key].as_str().is_some_and(|v| v.starts_with("1.")),
            "{key}: {features}"
        );
    }
    let list = |pointer: &str| -> Vec<String> {
        features
            .pointer(pointer)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let hooks = list("/hooks");
    for hook in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        assert!(hooks.iter().any(|h| h == hook), "{hook} missing: {hooks:?}");
    }
    let namespaces = list("/linux/namespaces");
    for ns in ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"] {
        assert!(
            namespaces.iter().any(|n| n == ns),
            "{ns} missing: {namespaces:?}"
        );
    }
    let options = list("/mountOptions");
    for option in ["ro", "nosuid", "nodev", "noexec", "bind", "rbind"] {
        assert!(
            options.iter().any(|o| o == option),
            "{option} missing: {options:?}"
        );
    }
    let caps = list("/linux/capabilities");
    assert!(
        caps.iter().any(|c| c == "CAP_SYS_ADMIN") && caps.iter().any(|c| c == "CAP_KILL"),
        "{caps:?}"
    );
}

#[test]
fn version_flag_succeeds() {
    let sb = Sandbox::new("version");
    let out = sb.runtime(&["--version"]);
    out.assert_success();
    assert!(!out.stdout.trim().is_empty(), "{out}");
    assert!(
        out.stdout.contains("spec"),
        "runc-style version output names the spec version:\n{out}"
    );
}
