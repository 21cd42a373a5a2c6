//! The example bundles in bundle-examples/ work, and make-rootfs.sh builds the
//! layout the harness builds.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use husk_conformance::{Config, Sandbox, reaper, rootfs, wait_until};
use serde_json::Value;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../bundle-examples")
}

/// Runs make-rootfs.sh into `dir/rootfs`.
#[track_caller]
fn make_rootfs(dir: &Path) {
    let script = examples_dir().join("make-rootfs.sh");
    let out = reaper::output(Command::new("sh").arg(&script).arg(dir.join("rootfs")))
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "make-rootfs.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A bundle dir in the sandbox with the example's config.json and a rootfs made by the script.
fn example_bundle(sb: &Sandbox, example: &str) -> PathBuf {
    let bundle = sb.host_dir(example);
    let config = examples_dir().join(example).join("config.json");
    fs::copy(&config, bundle.join("config.json"))
        .unwrap_or_else(|e| panic!("copy {}: {e}", config.display()));
    make_rootfs(&bundle);
    bundle
}

fn tree(dir: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in fs::read_dir(&current).into_iter().flatten().flatten() {
            let path = entry.path();
            let rel = path
                .strip_prefix(dir)
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let kind = entry.file_type().ok();
            if kind.is_some_and(|k| k.is_dir()) {
                stack.push(path);
                found.insert(format!("{rel}/"));
            } else if kind.is_some_and(|k| k.is_symlink()) {
                let target = fs::read_link(&path)
                    .map(|t| t.display().to_string())
                    .unwrap_or_default();
                found.insert(format!("{rel} -> {target}"));
            } else {
                found.insert(rel);
            }
        }
    }
    found
}

#[test]
fn make_rootfs_script_matches_the_harness_layout() {
    let sb = Sandbox::new("make-rootfs-layout");
    let scripted = sb.host_dir("scripted");
    make_rootfs(&scripted);
    // Idempotent: a second run succeeds and changes nothing.
    let first = tree(&scripted);
    make_rootfs(&scripted);
    assert_eq!(
        first,
        tree(&scripted),
        "second make-rootfs.sh run changed the tree"
    );

    let harness = sb.rootfs();
    assert_eq!(
        tree(&scripted.join("rootfs")),
        tree(&harness),
        "script and harness layouts differ"
    );
    for file in ["etc/passwd", "etc/group", "etc/hostname", "etc/hosts"] {
        assert_eq!(
            fs::read_to_string(scripted.join("rootfs").join(file)).ok(),
            fs::read_to_string(harness.join(file)).ok(),
            "{file} differs"
        );
    }
    assert_eq!(
        fs::read_to_string(harness.join("etc/passwd"))
            .ok()
            .as_deref(),
        Some(rootfs::PASSWD)
    );
    let busybox = fs::read(scripted.join("rootfs/bin/busybox")).expect("busybox copied");
    assert_eq!(
        busybox,
        fs::read(rootfs::HOST_BUSYBOX).expect("host busybox")
    );
}

#[test]
fn minimal_example_runs() {
    let sb = Sandbox::new("example-minimal");
    let bundle = example_bundle(&sb, "minimal");
    let id = sb.new_id();
    let out = sb.exec(
        sb.call(&["run", "--bundle", &bundle.to_string_lossy(), &id]),
        "run",
    );
    out.assert_success();
    assert_eq!(
        out.stdout_lines(),
        vec!["hello from husk", "uid=0(root) gid=0(root)", "husk"],
        "{out}"
    );
}

/// The harness default config is `runc spec` with no terminal, a writable
/// root and hostname `husk`; the minimal example is that plus its process.
#[test]
fn minimal_example_is_the_harness_default_config() {
    let text =
        fs::read_to_string(examples_dir().join("minimal/config.json")).expect("read example");
    let example: Value = serde_json::from_str(&text).expect("example is JSON");
    let expected = Config::runc_spec().sh("echo hello from husk; id; hostname");
    assert_eq!(&example, expected.json());
}

#[test]
fn hooks_example_logs_every_stage() {
    let sb = Sandbox::new("example-hooks");
    let bundle = example_bundle(&sb, "hooks");
    fs::create_dir_all(bundle.join("hooklog")).expect("hooklog dir");
    let id = sb.new_id();
    let bundle_arg = bundle.to_string_lossy().into_owned();
    sb.exec(sb.call(&["create", "--bundle", &bundle_arg, &id]), "create")
        .assert_success();
    sb.start(&id).assert_success();
    sb.wait_status(&id, "stopped");
    sb.delete(&id).assert_success();

    let log_path = bundle.join("hooklog/hooks.log");
    wait_until("the poststop line is written", || {
        fs::read_to_string(&log_path).is_ok_and(|l| l.contains("poststop "))
    });
    let log = fs::read_to_string(&log_path).unwrap_or_default();
    let stages: Vec<&str> = log
        .lines()
        .map(|l| {
            if l == "user process running" {
                "user"
            } else {
                l.split(' ').next().unwrap_or("")
            }
        })
        .collect();
    assert_eq!(
        stages.get(..3),
        Some(&["prestart", "createRuntime", "createContainer"][..]),
        "{log}"
    );
    assert_eq!(stages.last(), Some(&"poststop"), "{log}");
    let position = |s: &str| stages.iter().position(|x| *x == s);
    assert!(position("startContainer") < position("user"), "{log}");
    for stage in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
        "user",
    ] {
        assert_eq!(
            stages.iter().filter(|x| **x == stage).count(),
            1,
            "{stage} once:\n{log}"
        );
    }
    for line in log.lines().filter(|l| *l != "user process running") {
        let (stage, json) = line.split_once(' ').unwrap_or((line, ""));
        let state: Value =
            serde_json::from_str(json).unwrap_or_else(|e| panic!("{stage}: {e}: {json}"));
        assert_eq!(state["id"], id.as_str(), "{line}");
    }
}
