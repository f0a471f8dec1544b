//! The shell scripts' argument checking and dry runs (no root, nothing
//! changed on the machine), and shellcheck over every script.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

fn run(name: &str, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut c = Command::new("bash");
    c.arg(script(name)).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("bash")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The script fails with `code` and says `want` on stderr.
fn assert_refused(name: &str, args: &[&str], code: i32, want: &str) {
    let out = run(name, args, &[]);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{name} {args:?}: {}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains(want),
        "{name} {args:?}: stderr {:?} lacks {want:?}",
        text(&out.stderr)
    );
}

#[test]
fn sriov_arguments_are_checked() {
    assert_refused("sriov.sh", &[], 2, "PF NUM_VFS");
    assert_refused("sriov.sh", &["ens1f0"], 2, "PF NUM_VFS");
    assert_refused("sriov.sh", &["ens1f0", "four"], 1, "NUM_VFS = four");
    assert_refused("sriov.sh", &["ens1f0", "999"], 1, "NUM_VFS = 999");
    assert_refused(
        "sriov.sh",
        &["ens1f0", "4", "5"],
        1,
        "unexpected argument 5",
    );
    assert_refused(
        "sriov.sh",
        &["ens1f0", "4", "--frob"],
        1,
        "unknown option --frob",
    );
    assert_refused("sriov.sh", &["0000:3b:00", "4"], 1, "PF = 0000:3b:00");
    assert_refused("sriov.sh", &["a/b", "4"], 1, "PF = a/b");
    assert_refused(
        "sriov.sh",
        &["ens1f0", "2", "--mac-prefix", "03:00:00:00:00"],
        1,
        "multicast bit",
    );
    assert_refused(
        "sriov.sh",
        &["ens1f0", "2", "--mac-prefix", "02:00"],
        1,
        "five hex octets",
    );
    assert_refused(
        "sriov.sh",
        &["ens1f0", "2", "--mac-prefix"],
        1,
        "needs a value",
    );
    // Not a dry run: a missing PF is an error, nothing is attempted.
    assert_refused("sriov.sh", &["nosuchpf0", "2"], 1, "PF nosuchpf0 not found");
}

/// A fake sysfs with PF 0000:3b:00.0 (interface ens1f0): 64 VFs at most,
/// first VF at routing-ID offset 16, stride 1 (as Intel NICs place them).
fn fake_sysfs(root: &Path) {
    let dev = root.join("bus/pci/devices/0000:3b:00.0");
    std::fs::create_dir_all(dev.join("net/ens1f0")).unwrap();
    for (f, v) in [
        ("sriov_totalvfs", "64"),
        ("sriov_numvfs", "0"),
        ("sriov_offset", "16"),
        ("sriov_stride", "1"),
    ] {
        std::fs::write(dev.join(f), format!("{v}\n")).unwrap();
    }
    std::fs::create_dir_all(root.join("class/net/ens1f0")).unwrap();
    std::os::unix::fs::symlink(&dev, root.join("class/net/ens1f0/device")).unwrap();
}

#[test]
fn sriov_dry_run_prints_actions_and_config() {
    let dir = tempfile::tempdir().unwrap();
    fake_sysfs(dir.path());
    let sysfs = dir.path();
    for pf in ["ens1f0", "0000:3b:00.0"] {
        let out = run(
            "sriov.sh",
            &[pf, "10", "--bind", "--dry-run"],
            &[("SYSFS", sysfs)],
        );
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{pf}: {}", text(&out.stderr));
        assert!(stdout.contains("0 VFs now, 64 at most"), "{stdout}");
        assert!(
            stdout.contains("would write: echo 10 > ")
                && stdout.contains("0000:3b:00.0/sriov_numvfs"),
            "{stdout}"
        );
        // VF 9: routing ID 0x3b00 + 16 + 9 = 0x3b19 -> 3b:03.1.
        assert!(
            stdout.contains("would run: ip link set ens1f0 vf 9 mac 02:00:00:00:f0:09"),
            "{stdout}"
        );
        assert!(stdout.contains("would run: modprobe vfio-pci"), "{stdout}");
        assert!(
            stdout.contains("would write: echo vfio-pci > ")
                && stdout.contains("/bus/pci/devices/0000:3b:03.1/driver_override"),
            "{stdout}"
        );
        assert!(stdout.contains("device = \"0000:3b:02.0\""), "{stdout}");
        assert!(stdout.contains("device = \"0000:3b:03.1\""), "{stdout}");
        let allow = stdout
            .lines()
            .find(|l| l.starts_with("allow = "))
            .expect("allow line");
        assert_eq!(allow.matches("\"0000:3b:0").count(), 10, "{allow}");
        assert!(allow.starts_with("allow = [\"0000:3b:02.0\", \"0000:3b:02.1\""));
        // Dry: the fake tree is untouched.
        let n = std::fs::read_to_string(sysfs.join("bus/pci/devices/0000:3b:00.0/sriov_numvfs"));
        assert_eq!(n.unwrap(), "0\n");
    }
    // More than the PF offers.
    let out = run(
        "sriov.sh",
        &["ens1f0", "65", "--dry-run"],
        &[("SYSFS", sysfs)],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("at most 64 VFs"));
    // A PF without SR-IOV.
    std::fs::remove_file(sysfs.join("bus/pci/devices/0000:3b:00.0/sriov_totalvfs")).unwrap();
    let out = run(
        "sriov.sh",
        &["ens1f0", "2", "--dry-run"],
        &[("SYSFS", sysfs)],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no SR-IOV capability"));
}

#[test]
fn hugepages_arguments_are_checked() {
    for bad in ["abc", "0", "-3", "1048577", "1.5"] {
        assert_refused("hugepages.sh", &[bad], 1, &format!("N = {bad}:"));
    }
    assert_refused("hugepages.sh", &["1", "2"], 2, "usage");
}

#[test]
fn lab_arguments_are_checked() {
    assert_refused("lab.sh", &[], 2, "usage");
    assert_refused("lab.sh", &["frob"], 2, "usage");
    let out = Command::new("bash")
        .arg(script("lab.sh"))
        .arg("status")
        .env("LAB", "bad name")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("LAB=bad name"));
    let out = Command::new("bash")
        .arg(script("lab.sh"))
        .args(["set", "isp-q", "delay_ms=3"])
        .env("LAB", "nosuchlab")
        .output()
        .unwrap();
    assert!(
        text(&out.stderr).contains("unknown ISP"),
        "{}",
        text(&out.stderr)
    );
    let out = Command::new("bash")
        .arg(script("lab.sh"))
        .args(["up", "--frob"])
        .env("LAB", "nosuchlab")
        .output()
        .unwrap();
    assert!(text(&out.stderr).contains("unknown option --frob"));
    // Settings are checked before anything is built.
    let out = Command::new("bash")
        .arg(script("lab.sh"))
        .arg("up")
        .env("LAB", "nosuchlab")
        .env("DELAY_B", "slow")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("DELAY_B=slow"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn install_deps_dry_run_changes_nothing() {
    let out = run("install-deps.sh", &["--dry-run"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("all ") || stdout.contains("missing: "),
        "{stdout}"
    );
    assert_refused("install-deps.sh", &["--yes"], 2, "unknown argument --yes");
}

#[test]
fn fuzz_arguments_are_checked() {
    assert_refused(
        "fuzz.sh",
        &["ten"],
        2,
        "usage: scripts/fuzz.sh [SECS_PER_TARGET]",
    );
    assert_refused(
        "fuzz.sh",
        &["-1"],
        2,
        "usage: scripts/fuzz.sh [SECS_PER_TARGET]",
    );
    // 0 would be libFuzzer's "no time limit".
    assert_refused(
        "fuzz.sh",
        &["0"],
        2,
        "usage: scripts/fuzz.sh [SECS_PER_TARGET]",
    );
}

/// Every script passes shellcheck (installed by scripts/install-deps.sh).
#[test]
fn scripts_pass_shellcheck() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sh"))
        .collect();
    scripts.sort();
    assert!(scripts.len() >= 5, "{scripts:?}");
    let out = Command::new("shellcheck")
        .args(&scripts)
        .output()
        .expect("shellcheck not found: run scripts/install-deps.sh");
    assert!(out.status.success(), "shellcheck:\n{}", text(&out.stdout));
}
