//! Real buildbot workers, one per supported generation, run from the venvs that
//! `scripts/install-peers.sh` builds under `.peers/`, so integration tests can attach
//! unmodified workers to the master under test on loopback.
//!
//! A worker is created with its own `create-worker` / `create-slave` command and run
//! with `twistd --nodaemon` as the leader of a new process group. Dropping the
//! [`RunningWorker`] SIGKILLs and reaps twistd, then SIGKILLs the rest of that group
//! and the groups of any build commands the worker started (each runs in a group of
//! its own), so a failing test leaves nothing behind.
//!
//! By default the generated `buildbot.tac` is adjusted so that a worker retries within
//! about a second instead of backing off for up to a minute or five (see
//! [`WorkerOptions::fast_reconnect`]).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The worker generations the master must accept; each has its own peer venv.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Generation {
    /// buildbot-worker 4.3.0, CPython 3.11, Twisted 26.10.0.
    Worker4,
    /// buildbot-worker 2.10.5, CPython 3.8, Twisted 25.5.0. Reports its version as the
    /// date it was installed (its wheel ships no VERSION file).
    Worker2,
    /// buildbot-worker 0.9.15.post1, CPython 3.6, Twisted 18.9.0.
    Worker09,
    /// buildbot-slave 0.8.14.post1, CPython 2.7, Twisted 20.3.0.
    Slave08,
}

impl Generation {
    /// Every generation, newest first.
    pub const ALL: [Generation; 4] = [
        Generation::Worker4,
        Generation::Worker2,
        Generation::Worker09,
        Generation::Slave08,
    ];

    /// Every generation, newest first.
    pub fn all() -> [Generation; 4] {
        Self::ALL
    }

    /// The recipe name, i.e. `scripts/peers/<name>.sh` and `.peers/<name>/`.
    pub fn peer_name(self) -> &'static str {
        match self {
            Generation::Worker4 => "buildbot-worker-4",
            Generation::Worker2 => "buildbot-worker-2",
            Generation::Worker09 => "buildbot-worker-0.9",
            Generation::Slave08 => "buildslave-py2",
        }
    }

    /// Major version of the worker's Python: decides raw bytes versus `unicode` on the
    /// wire (a Python 2 slave sends most strings as raw bytes).
    pub fn python_major(self) -> u32 {
        match self {
            Generation::Slave08 => 2,
            _ => 3,
        }
    }

    /// The package version installed by the recipe.
    pub fn package_version(self) -> &'static str {
        match self {
            Generation::Worker4 => "4.3.0",
            Generation::Worker2 => "2.10.5",
            Generation::Worker09 => "0.9.15.post1",
            Generation::Slave08 => "0.8.14.post1",
        }
    }

    /// The old slave predates the `worker` rename: `buildslave create-slave`.
    fn create_command(self) -> (&'static str, &'static str) {
        match self {
            Generation::Slave08 => ("buildslave", "create-slave"),
            _ => ("buildbot-worker", "create-worker"),
        }
    }

    /// buildslave 0.8 has no `--maxretries`: it retries forever.
    pub fn supports_max_retries(self) -> bool {
        self != Generation::Slave08
    }

    /// The venv of this generation; panics with the install command if it is missing.
    pub fn venv(self) -> PathBuf {
        require_peer(self.peer_name())
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.peer_name())
    }
}

/// `<repo>/.peers`, where `scripts/install-peers.sh` puts one venv per peer.
pub fn peers_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".peers")
}

/// The venv of peer `name`. Panics, naming the command that installs it, when it is
/// missing or was left half-installed: a test that needs a peer must not pass silently
/// without it.
pub fn require_peer(name: &str) -> PathBuf {
    let venv = peers_root().join(name);
    // install-peers.sh writes .done only after the recipe succeeded.
    if !venv.join(".done").is_file() || !venv.join("bin").is_dir() {
        panic!(
            "peer venv {} is missing or incomplete; install it with:\n    \
             scripts/install-peers.sh {name}",
            venv.display()
        );
    }
    venv
}

/// How a worker is created. `WorkerOptions::new` gives the defaults the tests want.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub name: String,
    pub password: String,
    /// The master to connect to; must be a loopback IPv4 address.
    pub master: SocketAddr,
    /// Seconds between the worker's `keepalive()` calls; 0 turns them off (default 0,
    /// so the traffic only holds what a test asks for).
    pub keepalive: u32,
    /// Stop the worker after this many failed connection attempts (`--maxretries`);
    /// `None` retries forever. Not available for [`Generation::Slave08`].
    pub max_retries: Option<u32>,
    /// Retry connecting (and, on 4.x, logging in again) within about one second
    /// instead of the stock backoff. Default true.
    pub fast_reconnect: bool,
    /// More flags for `create-worker` / `create-slave`, e.g. `--allow-shutdown=signal`
    /// or `--umask=0o22`.
    pub extra_create_args: Vec<String>,
    /// A Twisted client endpoint string (`--connection-string`, 0.9 and later) used
    /// instead of `master`, e.g. `tls:host=127.0.0.1:port=9989:trustRoots=/ca-dir`;
    /// it must point at loopback too. `master` is still written to the tac, unused.
    pub connection_string: Option<String>,
    /// A venv to run instead of the generation's own, e.g. [`TLS_PEER`].
    pub venv: Option<PathBuf>,
}

/// buildbot-worker 4.3.0 with Twisted's `tls` extra (pyOpenSSL, service-identity),
/// which a `tls:` connection string needs; the plain venv lacks it.
pub const TLS_PEER: &str = "buildbot-worker-4-tls";

impl WorkerOptions {
    pub fn new(name: &str, password: &str, master: SocketAddr) -> WorkerOptions {
        WorkerOptions {
            name: name.to_owned(),
            password: password.to_owned(),
            master,
            keepalive: 0,
            max_retries: None,
            fast_reconnect: true,
            extra_create_args: Vec::new(),
            connection_string: None,
            venv: None,
        }
    }
}

/// A worker process (twistd in the foreground), leader of its own process group.
#[derive(Debug)]
pub struct RunningWorker {
    generation: Generation,
    basedir: PathBuf,
    child: Child,
    exit: Option<ExitStatus>,
    /// Length of twistd.log when this run started, so `log()` shows only this run.
    log_start: u64,
}

/// Appended to the 4.x and 2.x `buildbot.tac` for [`WorkerOptions::fast_reconnect`].
const FAST_RECONNECT_CLIENT_SERVICE: &str = r#"
# --- Added by pbmaster's test support: reconnect quickly. ---
# This worker connects through Twisted's ClientService; the retry policy built in
# Worker.__init__ calls buildbot_worker.pb.backoffPolicy() on every retry (refused or
# lost connection; on 4.x also the wait before logging in again after
# UnauthorizedLogin). Stock: 1 s * 1.5**attempt + up to 1 s of jitter, capped at 60 s.
# Here: 0.5 s * 1.5**attempt, capped at 1 s, no jitter. `maxdelay` is ignored by it.
import buildbot_worker.pb as _pbmaster_test_pb
from twisted.application.internet import backoffPolicy as _pbmaster_test_backoff
_pbmaster_test_pb.backoffPolicy = lambda: _pbmaster_test_backoff(
    initialDelay=0.5, maxDelay=1.0, factor=1.5, jitter=lambda: 0.0)
"#;

/// Appended to the 0.9 and 0.8 `buildbot.tac` for [`WorkerOptions::fast_reconnect`].
const FAST_RECONNECT_RECONNECTING_FACTORY: &str = r#"
# --- Added by pbmaster's test support: reconnect quickly. ---
# This worker reconnects through Twisted's ReconnectingClientFactory: each retry waits
# delay = min(delay * factor, maxDelay), with 12 % normal jitter; delay starts (and is
# reset on every established connection) at 1 s, factor is e (2.718) and maxDelay is
# `maxdelay` (stock 300 s). Here: from 0.5 s, factor 1.5, capped at 1 s (the cap is also
# passed as --maxdelay=1), so retries come after about 0.75 s, then 1 s.
s.bf.initialDelay = s.bf.delay = 0.5
s.bf.factor = 1.5
s.bf.maxDelay = 1.0
"#;

impl RunningWorker {
    /// Creates the worker in `basedir` (re-creating `buildbot.tac` from `opts` if it is
    /// already there, keeping everything else) and starts it. Its twistd log goes to
    /// `basedir/twistd.log`; anything twistd prints before logging is set up (a broken
    /// tac, an import error) goes to `basedir/twistd.out`. Panics if the peer venv is
    /// not installed.
    pub fn start(
        generation: Generation,
        basedir: &Path,
        opts: &WorkerOptions,
    ) -> io::Result<RunningWorker> {
        let venv = opts.venv.clone().unwrap_or_else(|| generation.venv());
        if !opts.master.ip().is_loopback() || !opts.master.is_ipv4() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "workers are only pointed at IPv4 loopback, not {}",
                    opts.master
                ),
            ));
        }
        if let Some(c) = &opts.connection_string {
            if !c.contains("host=127.0.0.1:") {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("workers are only pointed at host=127.0.0.1, not {c}"),
                ));
            }
        }
        if opts.max_retries.is_some() && !generation.supports_max_retries() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{generation} has no --maxretries"),
            ));
        }
        fs::create_dir_all(basedir)?;
        let basedir = basedir.canonicalize()?;
        create(generation, &venv, &basedir, opts)?;

        let log_start = fs::metadata(basedir.join("twistd.log")).map_or(0, |m| m.len());
        let out = File::create(basedir.join("twistd.out"))?;
        let mut cmd = Command::new(venv.join("bin/twistd"));
        // --pidfile= : no twistd.pid, so a SIGKILLed worker leaves no stale pid file
        // that could stop the next start in the same basedir.
        cmd.args([
            "--nodaemon",
            "--no_save",
            "--pidfile=",
            "-y",
            "buildbot.tac",
        ])
        .current_dir(&basedir)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0);
        python_env(&mut cmd, &venv);
        let child = cmd.spawn()?;
        Ok(RunningWorker {
            generation,
            basedir,
            child,
            exit: None,
            log_start,
        })
    }

    pub fn generation(&self) -> Generation {
        self.generation
    }

    pub fn basedir(&self) -> &Path {
        &self.basedir
    }

    /// Pid of twistd, which is also the process group id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILLs twistd (a crash, as far as the master can tell), waits until it is
    /// reaped, and only then SIGKILLs the rest of its process group and the groups of
    /// its build commands. In the other order twistd could see its command die and
    /// report the non-zero exit before dying itself, and the build would end `failure`
    /// instead of `retry`. Idempotent.
    pub fn kill(&mut self) {
        if self.exit.is_some() {
            return;
        }
        // Found while twistd lives: once it is gone its commands are no longer its
        // descendants but orphans.
        let command_groups = descendant_groups(self.pid());
        let _ = self.child.kill();
        self.exit = self.child.wait().ok();
        self.kill_group_members();
        for pgid in command_groups {
            signal_group(pgid, "KILL");
        }
    }

    /// SIGTERMs the worker's process group (a clean twistd shutdown), waits up to 10 s
    /// for it to exit, then SIGKILLs whatever is left. Returns twistd's exit status;
    /// after a clean shutdown twistd re-raises the SIGTERM, so that is "signal 15", not 0.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            signal_group(self.pid(), "TERM");
            if self.wait_timeout(Duration::from_secs(10)).is_none() {
                self.kill();
            }
        }
        // Build commands in their own groups outlive a clean twistd exit too.
        self.kill_group_members();
        self.exit
    }

    /// Exit status if twistd has exited (reaping it), without waiting.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// Waits up to `timeout` for twistd to exit by itself (e.g. after `--maxretries`,
    /// or a login failure other than UnauthorizedLogin, which stops the reactor).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.try_wait().is_none()
    }

    /// Waits up to `timeout` until a process of this worker runs `program` (the file
    /// name of its argv[0], e.g. `sleep`): the build command has really started. The
    /// master learns that later (4.x workers hold output back for up to 5 s).
    pub fn wait_for_command(&self, program: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if runs_descendant(self.pid(), program) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether any process is still in the worker's process group.
    pub fn group_alive(&self) -> bool {
        group_exists(self.pid())
    }

    /// This run's part of twistd.log, plus twistd's own output if there is any; meant
    /// for assertion messages.
    pub fn log(&self) -> String {
        let raw = fs::read(self.basedir.join("twistd.log")).unwrap_or_default();
        // If the log was rotated since the start, the whole new file is this run's.
        let start = usize::try_from(self.log_start).unwrap_or(0);
        let tail = raw.get(start..).unwrap_or(&raw[..]);
        let mut text = String::from_utf8_lossy(tail).into_owned();
        let out = fs::read(self.basedir.join("twistd.out")).unwrap_or_default();
        if !out.is_empty() {
            text.push_str("\n--- twistd output ---\n");
            text.push_str(&String::from_utf8_lossy(&out));
        }
        text
    }

    /// Waits up to `timeout` for `needle` to appear in [`log`](Self::log); e.g.
    /// `"worker is ready"` (`"slave is ready"` on 0.8) once the login completed.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills processes left in the worker's own group after twistd itself exited.
    fn kill_group_members(&self) {
        if group_exists(self.pid()) {
            signal_group(self.pid(), "KILL");
        }
    }
}

impl Drop for RunningWorker {
    fn drop(&mut self) {
        self.kill();
        self.kill_group_members();
    }
}

/// Runs `create-worker` / `create-slave` for `opts` into `basedir`, then applies
/// [`WorkerOptions::fast_reconnect`] to the generated tac.
fn create(
    generation: Generation,
    venv: &Path,
    basedir: &Path,
    opts: &WorkerOptions,
) -> io::Result<()> {
    let tac = basedir.join("buildbot.tac");
    // With --force an existing tac is kept (a differing one goes to buildbot.tac.new),
    // so remove it to have one that matches these options.
    match fs::remove_file(&tac) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let (script, subcommand) = generation.create_command();
    let mut cmd = Command::new(venv.join("bin").join(script));
    cmd.arg(subcommand)
        .args(["--quiet", "--force"])
        .arg(format!("--keepalive={}", opts.keepalive));
    if opts.fast_reconnect {
        cmd.arg("--maxdelay=1");
    }
    if let Some(n) = opts.max_retries {
        cmd.arg(format!("--maxretries={n}"));
    }
    if let Some(c) = &opts.connection_string {
        cmd.arg(format!("--connection-string={c}"));
    }
    cmd.args(&opts.extra_create_args)
        .arg(basedir)
        .arg(format!("{}:{}", opts.master.ip(), opts.master.port()))
        .arg(&opts.name)
        .arg(&opts.password)
        .stdin(Stdio::null());
    python_env(&mut cmd, venv);
    let out = cmd.output()?;
    if !out.status.success() || !tac.is_file() {
        return Err(io::Error::other(format!(
            "{script} {subcommand} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    if opts.fast_reconnect {
        let patch = match generation {
            Generation::Worker4 | Generation::Worker2 => FAST_RECONNECT_CLIENT_SERVICE,
            Generation::Worker09 | Generation::Slave08 => FAST_RECONNECT_RECONNECTING_FACTORY,
        };
        let mut f = fs::OpenOptions::new().append(true).open(&tac)?;
        f.write_all(patch.as_bytes())?;
    }
    Ok(())
}

/// Runs Python from `venv` unaffected by the caller's Python environment.
pub fn python_env(cmd: &mut Command, venv: &Path) {
    cmd.env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME")
        .env_remove("PYTHONSTARTUP")
        .env("VIRTUAL_ENV", venv)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
}

/// Sends `signal` (a name such as `KILL`) to process group `pgid`. There is no std API
/// for signalling a group and libc is not a dependency, so this runs `kill(1)`.
fn signal_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args(["-s", signal, "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Whether process group `pgid` has any member (zombies included).
fn group_exists(pgid: u32) -> bool {
    Command::new("kill")
        .args(["-s", "0", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Process groups of all descendants of `root`.
fn descendant_groups(root: u32) -> BTreeSet<u32> {
    descendants(root).into_iter().map(|p| p.pgrp).collect()
}

/// Whether a live (not zombie) descendant of `root` runs `program`: the file name of
/// its argv[0].
fn runs_descendant(root: u32, program: &str) -> bool {
    descendants(root)
        .iter()
        .filter(|p| p.state != 'Z')
        .any(|p| argv0_name(p.pid).as_deref() == Some(program))
}

/// What /proc/PID/stat says about one process.
#[derive(Debug, Clone, Copy)]
struct ProcStat {
    pid: u32,
    state: char,
    ppid: u32,
    pgrp: u32,
}

/// Every descendant of `root`, read from /proc.
fn descendants(root: u32) -> Vec<ProcStat> {
    let mut children: HashMap<u32, Vec<ProcStat>> = HashMap::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(stat) = proc_stat(pid) {
                children.entry(stat.ppid).or_default().push(stat);
            }
        }
    }
    let mut found = Vec::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        for &child in children.get(&pid).map_or(&[][..], |v| &v[..]) {
            found.push(child);
            stack.push(child.pid);
        }
    }
    found
}

/// Reads /proc/PID/stat. The command name may contain spaces and parentheses, so
/// fields are counted after its last ')'.
fn proc_stat(pid: u32) -> Option<ProcStat> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(ProcStat {
        pid,
        state,
        ppid,
        pgrp,
    })
}

/// The file name of a process's argv[0], from /proc/PID/cmdline.
fn argv0_name(pid: u32) -> Option<String> {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let argv0 = cmdline.split(|&b| b == 0).next()?;
    let name = Path::new(std::str::from_utf8(argv0).ok()?).file_name()?;
    Some(name.to_string_lossy().into_owned())
}
