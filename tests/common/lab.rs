//! Helpers for tests on the network-namespace lab (`scripts/lab.sh`): bring a
//! lab up under a unique prefix and always down again ([`Lab`]), run commands
//! in its namespaces, start background processes there ([`NsProcess`]), wait
//! for a TCP port, ping and read the delay lines' stats.
//!
//! These tests need root and `ip netns`; without them they fail (CI runs them
//! as root), they never skip. All traffic stays inside the namespaces a test
//! made.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The repository's `scripts/lab.sh`.
pub fn lab_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/lab.sh")
}

/// The `appliance` binary cargo built for this test run.
pub fn appliance_bin() -> &'static str {
    env!("CARGO_BIN_EXE_appliance")
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd`, panicking with its output unless it succeeds; returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", describe(cmd)));
    assert!(
        out.status.success(),
        "`{}` failed ({}); these tests need root and network namespaces\nstdout: {}\nstderr: {}",
        describe(cmd),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip netns exec <ns> <args...>` as a command to adjust and run.
pub fn ns_cmd(ns: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(args);
    c
}

/// Runs `args` in namespace `ns`; returns its output whatever the status.
pub fn ns_output(ns: &str, args: &[&str]) -> Output {
    ns_cmd(ns, args)
        .output()
        .unwrap_or_else(|e| panic!("ip netns exec {ns} {args:?}: {e}"))
}

/// Runs `args` in namespace `ns`, panicking unless it succeeds; stdout.
pub fn ns_ok(ns: &str, args: &[&str]) -> String {
    run_ok(&mut ns_cmd(ns, args))
}

/// A process running in a namespace, stopped (SIGTERM, then SIGKILL) when
/// dropped. Its stdout and stderr go to a log file, so a chatty process can
/// never block on a full pipe.
pub struct NsProcess {
    child: Child,
    pub log: PathBuf,
    what: String,
    /// How it exited, once [`NsProcess::stop`] has reaped it.
    pub status: Option<ExitStatus>,
}

impl NsProcess {
    /// Starts `args` in namespace `ns` with working directory `cwd`.
    pub fn start(ns: &str, args: &[&str], cwd: &Path, log: &Path) -> NsProcess {
        let file = std::fs::File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let err = file.try_clone().expect("dup log fd");
        let child = ns_cmd(ns, args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("ip netns exec {ns} {args:?}: {e}"));
        NsProcess {
            child,
            log: log.to_path_buf(),
            what: format!("{ns}: {args:?}"),
            status: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Panics (with the log) if the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited ({status}); log:\n{}",
                self.what,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL; returns the log and
    /// records the exit status in `status`.
    pub fn stop(&mut self, grace: Duration) -> String {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let until = Instant::now() + grace;
            while Instant::now() < until {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
            }
        }
        if let Ok(status) = self.child.wait() {
            self.status = Some(status);
        }
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NsProcess {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(2));
    }
}

/// Waits until a TCP connect from inside namespace `ns` to `addr` succeeds;
/// panics after `timeout`.
pub fn wait_for_port(ns: &str, addr: SocketAddr, timeout: Duration) {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        appliance::ports::linux::rawsock::enter_netns(&ns)
            .unwrap_or_else(|e| panic!("entering namespace {ns}: {e}"));
        let until = Instant::now() + timeout;
        loop {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(_) => return,
                Err(e) if Instant::now() >= until => {
                    panic!("{addr} in {ns} not accepting after {timeout:?}: {e}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    })
    .join()
    .expect("wait_for_port");
}

/// Waits until `ifname` in namespace `ns` has carrier (operstate UP): a
/// veth gets it a moment after `ip link set up`, and drops frames before.
pub fn wait_carrier(ns: &str, ifname: &str, timeout: Duration) {
    let until = Instant::now() + timeout;
    loop {
        let out = run_ok(Command::new("ip").args(["-n", ns, "-o", "link", "show", ifname]));
        if out.contains("state UP") {
            return;
        }
        assert!(
            Instant::now() < until,
            "{ifname} in {ns}: no carrier after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What `ping` reported.
#[derive(Debug, Clone)]
pub struct Ping {
    pub sent: u32,
    pub received: u32,
    /// Round-trip times of the replies, milliseconds.
    pub rtts_ms: Vec<f64>,
}

impl Ping {
    /// Median RTT, milliseconds (panics without replies).
    pub fn median_ms(&self) -> f64 {
        assert!(!self.rtts_ms.is_empty(), "no ping replies: {self:?}");
        let mut v = self.rtts_ms.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    }

    pub fn min_ms(&self) -> f64 {
        self.rtts_ms.iter().copied().fold(f64::INFINITY, f64::min)
    }
}

/// Pings `dst` from namespace `ns` `count` times, `interval` apart, each
/// reply awaited at most `wait_s` seconds. Never panics on loss.
pub fn ping(ns: &str, dst: &str, count: u32, interval: Duration, wait_s: u32) -> Ping {
    let out = ns_output(
        ns,
        &[
            "ping",
            "-n",
            "-c",
            &count.to_string(),
            "-i",
            &format!("{:.3}", interval.as_secs_f64()),
            "-W",
            &wait_s.to_string(),
            dst,
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let rtts_ms: Vec<f64> = text
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split_whitespace().next()?.parse().ok())
        .collect();
    let sent = text
        .lines()
        .find_map(|l| l.split(" packets transmitted").next()?.trim().parse().ok())
        .unwrap_or(0);
    assert_eq!(
        sent,
        count,
        "ping {dst} in {ns} did not run as expected:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ping {
        sent,
        received: rtts_ms.len() as u32,
        rtts_ms,
    }
}

static LABS: AtomicUsize = AtomicUsize::new(0);

/// A lab brought up by `scripts/lab.sh up` under a prefix unique to this
/// process and call, taken down (`lab.sh down`) when dropped, even when the
/// test panics.
pub struct Lab {
    pub prefix: String,
    /// `/run/<prefix>`: the delay lines' control, stats, pid and log files.
    pub run_dir: PathBuf,
}

/// How to bring a lab up.
#[derive(Debug, Clone, Default)]
pub struct LabOptions {
    /// `up --kernel-router`: the app namespace is a Linux router.
    pub kernel_router: bool,
    /// Extra environment for `lab.sh up` (`DELAY_A`, `LOSS_B`, ...).
    pub env: Vec<(String, String)>,
}

impl Lab {
    pub fn up(opts: &LabOptions) -> Lab {
        let prefix = format!(
            "t{}x{}",
            std::process::id(),
            LABS.fetch_add(1, Ordering::Relaxed)
        );
        // From here on the guard exists, so a failed `up` is cleaned too.
        let lab = Lab {
            run_dir: PathBuf::from(format!("/run/{prefix}")),
            prefix,
        };
        let mut cmd = lab.script();
        cmd.arg("up");
        if opts.kernel_router {
            cmd.arg("--kernel-router");
        }
        cmd.env("APPLIANCE", appliance_bin());
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        run_ok(&mut cmd);
        lab
    }

    /// `lab.sh` with `LAB` set to this lab's prefix.
    pub fn script(&self) -> Command {
        let mut c = Command::new("bash");
        c.arg(lab_script()).env("LAB", &self.prefix);
        c
    }

    /// Full name of lab namespace `short` (`cli`, `app`, `isp-a`, `srv`...).
    pub fn ns(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    /// `lab.sh set <isp> <key=value...>`; returns its output.
    pub fn set(&self, isp: &str, kvs: &[&str]) -> String {
        run_ok(self.script().arg("set").arg(isp).args(kvs))
    }

    pub fn status(&self) -> String {
        run_ok(self.script().arg("status"))
    }

    /// The delay line stats JSON of `isp` (`isp-a`...).
    pub fn delay_line_stats(&self, isp: &str) -> serde_json::Value {
        let path = self.run_dir.join(format!("{isp}.stats.json"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Namespaces of this lab that exist now.
    pub fn namespaces(&self) -> Vec<String> {
        let out = run_ok(Command::new("ip").args(["netns", "list"]));
        out.lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(&format!("{}-", self.prefix)))
            .map(str::to_string)
            .collect()
    }

    /// `lab.sh down` (idempotent); Drop calls it too.
    pub fn down(&self) -> Output {
        self.script().arg("down").output().expect("lab.sh down")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = self.down();
        if !out.status.success() {
            eprintln!(
                "lab.sh down for {} failed: {}",
                self.prefix,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// The lab's servers (the server namespace) and their HTTP port.
pub const SERVER4: &str = "203.0.113.80";
pub const SERVER6: &str = "2001:db8:80::80";
pub const HTTP_PORT: u16 = 8080;

/// `python3 -m http.server` on both server addresses, serving `www`, logs in
/// `logs`; returns once both listen.
pub fn start_http_servers(lab: &Lab, www: &Path, logs: &Path) -> Vec<NsProcess> {
    let srv = lab.ns("srv");
    let port = HTTP_PORT.to_string();
    let procs = [SERVER4, SERVER6]
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            NsProcess::start(
                &srv,
                &[
                    "/usr/bin/python3",
                    "-m",
                    "http.server",
                    "--bind",
                    addr,
                    &port,
                ],
                www,
                &logs.join(format!("http{i}.log")),
            )
        })
        .collect();
    for addr in [SERVER4, SERVER6] {
        let a: std::net::IpAddr = addr.parse().unwrap();
        wait_for_port(&srv, (a, HTTP_PORT).into(), Duration::from_secs(10));
    }
    procs
}

/// `appliance run --config CONFIG` in the lab's appliance namespace, its
/// stats written to `work/stats-TAG.json` (returned) and its log to
/// `work/appliance-TAG.log`; checked to be still running after 500 ms.
pub fn start_appliance(lab: &Lab, config: &Path, work: &Path, tag: &str) -> (NsProcess, PathBuf) {
    let stats = work.join(format!("stats-{tag}.json"));
    let mut proc = NsProcess::start(
        &lab.ns("app"),
        &[
            appliance_bin(),
            "run",
            "--config",
            config.to_str().unwrap(),
            "--stats-out",
            stats.to_str().unwrap(),
        ],
        work,
        &work.join(format!("appliance-{tag}.log")),
    );
    std::thread::sleep(Duration::from_millis(500));
    proc.assert_running();
    (proc, stats)
}

/// An appliance started by [`start_appliance`]: its process and where its
/// stats JSON goes at exit.
pub struct Appliance {
    pub proc: NsProcess,
    pub stats: PathBuf,
}

impl Appliance {
    /// `start_appliance` as one value.
    pub fn start(lab: &Lab, config: &Path, work: &Path, tag: &str) -> Appliance {
        let (proc, stats) = start_appliance(lab, config, work, tag);
        Appliance { proc, stats }
    }

    /// SIGTERM; checks the exit was clean and returns the stats JSON it wrote.
    pub fn stop(mut self) -> serde_json::Value {
        self.proc.assert_running();
        let log = self.proc.stop(Duration::from_secs(10));
        assert!(
            self.proc.status.is_some_and(|s| s.success()),
            "appliance exit {:?}; log:\n{log}",
            self.proc.status
        );
        let text = std::fs::read_to_string(&self.stats)
            .unwrap_or_else(|e| panic!("no stats after SIGTERM ({e}); log:\n{log}"));
        serde_json::from_str(&text).unwrap()
    }
}

/// A count in the stats JSON (panics naming the value when it is not one).
pub fn count(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// Fails (never skips) when one of `tools` is not on the PATH.
pub fn require_tools(tools: &[&str]) {
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(found, "{tool} missing: run scripts/install-deps.sh");
    }
}

/// `conf/lab-afpacket.toml` with `edit` applied, written to `work/name`.
pub fn lab_config(work: &Path, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/lab-afpacket.toml"),
    )
    .unwrap();
    let path = work.join(name);
    std::fs::write(&path, edit(base)).unwrap();
    path
}
