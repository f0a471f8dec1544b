//! The fuzz targets' seed corpora in `fuzz/corpus/<target>/` are the ones
//! their writers make: frames from `pipelines::testing` builders
//! (`pipelines::testing::fuzz_seeds`) and, for `config`, the site
//! configurations in `conf/`. `FUZZ_CORPUS_WRITE=1` (what
//! `scripts/fuzz-corpus` sets) writes them instead of checking them.

use std::path::{Path, PathBuf};

use pipelines::redirect::db::Load;
use pipelines::redirect::peer_load::format_load;
use pipelines::testing::fuzz_seeds::seeds;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every seed: (target, file name, bytes).
fn all_seeds() -> Vec<(String, String, Vec<u8>)> {
    let mut out: Vec<_> = seeds()
        .into_iter()
        .map(|(t, n, b)| (t.to_string(), n, b))
        .collect();
    let mut confs: Vec<_> = std::fs::read_dir(root().join("conf"))
        .expect("conf/")
        .map(|e| e.expect("conf entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    confs.sort();
    for p in confs {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        out.push(("config".into(), name, std::fs::read(&p).expect("conf file")));
    }
    for (name, tcp, udp) in [("small", 10, 3), ("clamped", u64::MAX, 0)] {
        let text = format_load(Load { tcp, udp }, 2, 1);
        out.push(("peer_load".into(), name.into(), text.into_bytes()));
    }
    out
}

fn corpus_file(target: &str, name: &str) -> PathBuf {
    root().join("fuzz/corpus").join(target).join(name)
}

#[test]
fn fuzz_seed_corpora_are_current() {
    let write = std::env::var_os("FUZZ_CORPUS_WRITE").is_some();
    let seeds = all_seeds();
    assert!(seeds.len() >= 20, "seeds for every target");
    let mut stale = Vec::new();
    for (target, name, bytes) in &seeds {
        let f = corpus_file(target, name);
        if write {
            std::fs::create_dir_all(f.parent().unwrap()).expect("corpus dir");
            std::fs::write(&f, bytes).expect("write seed");
        } else if std::fs::read(&f).ok().as_deref() != Some(bytes.as_slice()) {
            stale.push(f.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "seed files missing or out of date (run scripts/fuzz-corpus): {stale:?}"
    );
}

#[test]
fn every_config_seed_is_a_valid_site() {
    for (target, name, bytes) in all_seeds() {
        if target != "config" {
            continue;
        }
        let text = String::from_utf8(bytes).expect("utf-8");
        let cfg = appliance::config::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        // The plan may refuse what this machine lacks (CPUs, devices); the
        // model must parse, so the fuzzer starts from real sites.
        let _ = appliance::config::plan::validate_with_cpus(&cfg, 8);
    }
    assert!(Path::new(&root().join("conf/demo.toml")).exists());
}

/// Every file of `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/`
/// (inputs that once crashed a target) of the packet targets runs through
/// the target's body without a panic, every buffer forwarded or counted.
#[test]
fn corpora_and_regressions_replay_cleanly() {
    use pipelines::testing::fuzz;
    type Body = fn(&[u8]);
    let targets: [(&str, Body); 5] = [
        ("pipeline", fuzz::pipeline),
        ("icmp_error", fuzz::icmp_error),
        ("neighbour", fuzz::neighbour),
        ("service", fuzz::service),
        ("tcp_window", fuzz::tcp_window),
    ];
    let mut ran = 0;
    for (target, body) in targets {
        for dir in ["fuzz/corpus", "fuzz/regressions"] {
            let Ok(entries) = std::fs::read_dir(root().join(dir).join(target)) else {
                continue;
            };
            for e in entries {
                let path = e.expect("entry").path();
                let bytes = std::fs::read(&path).expect("input");
                let r = std::panic::catch_unwind(|| body(&bytes));
                assert!(r.is_ok(), "{} panicked", path.display());
                ran += 1;
            }
        }
    }
    assert!(ran >= 20, "{ran} inputs");
}
