//! "Instances" booted from the stock Debian image as a cloud boots them: the root
//! file system unpacked into a folder of their own, the user data handed to the
//! image's own cloud-init through a NoCloud seed, and cloud-init's boot stages run in
//! a chroot inside new UTS, mount and PID namespaces. cloud-init may set the host
//! name (the host's stays untouched), mounts vanish with the namespace, and killing
//! the namespace's first process ends everything the instance started.
//!
//! The one thing added to the stock file system is the network's settings: the
//! host's CA bundle, resolver and pip settings, so that the boot reaches PyPI the way
//! the host does (a cloud's network would need none of it).

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// cloud-init's stages, in the order an init system runs them at first boot.
const STAGES: &str = "cloud-init init --local; cloud-init init; \
    cloud-init modules --mode config; exec cloud-init modules --mode final";

/// Where a NoCloud seed sits on the root file system.
const SEED: &str = "var/lib/cloud/seed/nocloud";

/// Boots instances from the stock image's root file system tarball.
#[derive(Debug, Clone)]
pub struct StockBoot {
    pub rootfs_tar: PathBuf,
}

/// Why these tests cannot run here, if they cannot.
pub fn cannot_run() -> Option<String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        return Some("booting a chroot needs root (mounts and namespaces)".into());
    }
    let unshare = Command::new("unshare")
        .args(["--uts", "--mount", "--pid", "--fork", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    (!unshare).then(|| "unshare cannot create namespaces on this machine".into())
}

impl StockBoot {
    /// Unpacks the image under `home/root`, seeds it with `user_data` and the
    /// instance's id, and starts its boot in a process group of its own; output goes
    /// to `home/boot.log`.
    pub fn boot(&self, home: &Path, instance_id: &str, user_data: &str) -> io::Result<Child> {
        let root = home.join("root");
        fs::create_dir_all(&root)?;
        let untar = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-xf")
            .arg(&self.rootfs_tar)
            .status()?;
        if !untar.success() {
            return Err(io::Error::other(format!("tar: {untar}")));
        }
        let seed = root.join(SEED);
        fs::create_dir_all(&seed)?;
        fs::write(seed.join("user-data"), user_data)?;
        // The id names the instance to cloud-init (a new id, a first boot); the host
        // name is what EC2's metadata would give.
        fs::write(
            seed.join("meta-data"),
            format!("instance-id: {instance_id}\nlocal-hostname: {instance_id}\n"),
        )?;
        network_settings(&root)?;

        let log = fs::File::create(home.join("boot.log"))?;
        let err = log.try_clone()?;
        let mounts = "mount -t proc proc root/proc && mount --rbind /dev root/dev \
                      && mount -t sysfs sysfs root/sys && exec chroot root /bin/sh -c \"$0\"";
        Command::new("unshare")
            // --kill-child: the namespace, and all in it, dies with this process.
            .args([
                "--uts",
                "--mount",
                "--pid",
                "--fork",
                "--kill-child",
                "sh",
                "-c",
            ])
            .arg(mounts)
            .arg(STAGES)
            .current_dir(home)
            .env_clear()
            .envs(boot_env())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0)
            .spawn()
    }
}

/// The host's CA bundle, resolver and pip settings, copied in.
fn network_settings(root: &Path) -> io::Result<()> {
    for file in [
        "etc/ssl/certs/ca-certificates.crt",
        "etc/resolv.conf",
        "etc/pip.conf",
    ] {
        let host = Path::new("/").join(file);
        if host.exists() {
            let inside = root.join(file);
            // resolv.conf may be a dangling link in the image.
            let _ = fs::remove_file(&inside);
            fs::copy(&host, &inside)?;
        }
    }
    Ok(())
}

/// What a booting machine's processes see: a plain PATH and locale, and the host's
/// pip and proxy settings (those that name no host folder the chroot lacks).
fn boot_env() -> Vec<(String, String)> {
    let mut env = vec![
        (
            "PATH".to_owned(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
        ),
        ("LANG".to_owned(), "C.UTF-8".to_owned()),
    ];
    for (key, value) in std::env::vars() {
        let lower = key.to_ascii_lowercase();
        let wanted = key.starts_with("PIP_") || lower.ends_with("_proxy");
        let missing_folder = value.starts_with('/') && !Path::new(&value).exists();
        if wanted && !missing_folder {
            env.push((key, value));
        }
    }
    env
}

/// Processes whose root is `root` (or below): what an instance left running.
pub fn processes_inside(root: &Path) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| fs::read_link(format!("/proc/{pid}/root")).is_ok_and(|r| r.starts_with(root)))
        .collect()
}
