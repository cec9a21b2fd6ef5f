//! A private Docker daemon for the docker driver's tests: its own data and exec
//! folders and socket under a temporary folder, so a test never touches a system
//! daemon; stopped by its PID, with whatever it left mounted unmounted, when dropped.

use super::wait;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The stock image as `scripts/install-stock-image.sh` leaves it.
pub fn stock_image_dir() -> PathBuf {
    super::workers::peers_root().join("stock-image")
}

/// Why docker cannot run here at all (not root, no dockerd), if so.
pub fn cannot_run() -> Option<String> {
    if !is_root() {
        return Some("the docker tests need root to start a private dockerd".into());
    }
    let found = Command::new("dockerd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    (!found).then(|| "no dockerd on PATH (scripts/test.sh installs docker.io)".into())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

pub struct Dockerd {
    child: Option<Child>,
    /// Everything of the daemon lives under here.
    pub root: PathBuf,
    pub socket: PathBuf,
}

impl Dockerd {
    /// Starts a daemon without iptables rules or a bridge (containers use the host's
    /// network) and waits until it answers.
    pub fn start() -> Dockerd {
        // Short: containerd's sockets live under the exec root, and a unix socket's
        // path has a small limit.
        let root = PathBuf::from(format!("/tmp/pbm-dockerd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("dockerd folder");
        let socket = root.join("docker.sock");
        let log = std::fs::File::create(log_path()).expect("dockerd log");
        let child = Command::new("dockerd")
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .arg("--data-root")
            .arg(root.join("data"))
            .arg("--exec-root")
            .arg(root.join("exec"))
            .arg("--pidfile")
            .arg(root.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("dockerd starts");
        let mut d = Dockerd {
            child: Some(child),
            root,
            socket,
        };
        wait::until("dockerd to answer", Duration::from_secs(60), || {
            if let Some(Ok(Some(status))) = d.child.as_mut().map(|c| c.try_wait()) {
                panic!("dockerd exited ({status}):\n{}", d.log());
            }
            d.cli(&["version"]).is_ok()
        });
        d
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(log_path()).unwrap_or_default()
    }

    /// Runs the docker client against this daemon; its stdout, or its stderr as the
    /// error.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("docker")
            .arg("-H")
            .arg(self.host())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("docker: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// `docker import` of a root file system tarball as `tag`.
    pub fn import(&self, tarball: &Path, tag: &str) {
        let path = tarball.display().to_string();
        self.cli(&["import", &path, tag])
            .unwrap_or_else(|e| panic!("docker import {path}: {e}"));
    }

    /// Ids of every container (running or not) with the label `key` (any value), or
    /// `key=value`.
    pub fn labelled(&self, label: &str) -> Vec<String> {
        self.cli(&[
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            &format!("label={label}"),
        ])
        .unwrap_or_else(|e| panic!("docker ps: {e}"))
        .lines()
        .map(str::to_owned)
        .collect()
    }

    /// A container's label value.
    pub fn label_of(&self, container: &str, key: &str) -> String {
        let format = format!("{{{{index .Config.Labels \"{key}\"}}}}");
        self.cli(&["inspect", "--format", &format, container])
            .unwrap_or_else(|e| panic!("docker inspect: {e}"))
            .trim()
            .to_owned()
    }
}

impl Drop for Dockerd {
    /// SIGTERM (the daemon stops its containers and containerd), SIGKILL after a
    /// while; then unmounts what is left under its folder and removes it.
    fn drop(&mut self) {
        // Every container of this private daemon is a test's: none may outlive it
        // (a container whose first process ignores SIGTERM would hold the daemon's
        // shutdown past its patience).
        if let Ok(all) = self.cli(&["ps", "-aq"]) {
            let ids: Vec<&str> = all.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids);
                let _ = self.cli(&args);
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // containerd and container shims, if any outlived the daemon: the processes
        // whose command line names this daemon's folder.
        for pid in processes_naming(&self.root) {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
        for mount in mounts_under(&self.root) {
            let _ = Command::new("umount").arg("-l").arg(&mount).status();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The daemon's log, kept after the daemon's folder is removed.
fn log_path() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("dockerd-{}.log", std::process::id()))
}

/// Mount points under `root`, deepest first.
fn mounts_under(root: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = root.display().to_string();
    let mut found: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&prefix))
        .map(str::to_owned)
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.len()));
    found
}

/// Ids of the processes whose command line contains `root`'s path.
fn processes_naming(root: &Path) -> Vec<String> {
    let needle = root.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.to_owned();
            pid.bytes().all(|b| b.is_ascii_digit()).then_some(())?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline)
                .contains(&needle)
                .then_some(pid)
        })
        .filter(|pid| *pid != std::process::id().to_string())
        .flat_map(|pid| {
            // A shim's children are the containers' first processes: they go first.
            let mut all = children_of(&pid);
            all.push(pid);
            all
        })
        .collect()
}

/// Ids of the processes whose parent is `parent`.
fn children_of(parent: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // pid (comm) state ppid ...: split after the last ')'.
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .to_owned();
            (ppid == parent).then(|| e.file_name().to_string_lossy().into_owned())
        })
        .collect()
}
