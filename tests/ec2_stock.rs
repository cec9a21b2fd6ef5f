//! The ec2 driver's **default** user data on a stock image, booted for real: each
//! instance moto launches is unpacked from the stock Debian root file system
//! (debootstrap's, with python3 and cloud-init and nothing of buildbot), and the
//! image's own cloud-init runs the user data from a NoCloud seed, in a chroot inside
//! new UTS, mount and PID namespaces. The script installs buildbot-worker from PyPI,
//! creates an unprivileged user and starts the worker with the instance's one-time
//! credentials; the worker attaches and builds. Build with `--features ec2`; needs
//! root, and the stock image of `scripts/install-stock-image.sh`.
#![cfg(feature = "ec2")]

mod support;

use std::path::Path;
use std::time::Duration;
use support::chroot::{cannot_run, processes_inside, StockBoot};
use support::docker::stock_image_dir;
use support::ec2::{BootPolicy, IMAGE};
use support::ec2_cloud::{wait_all_ended, Cloud};
use support::latent::phases;
use support::master::{test_dir, MasterProcess};
use support::pb::try_login;
use support::wait;

/// A boot installs a venv and buildbot-worker from the index: generous, for a loaded
/// machine and a slow network.
const LONG: Duration = Duration::from_secs(300);

/// Proof of where the step ran: the user cloud-init's script made, the host name
/// cloud-init set from the metadata, the user data cloud-init kept, the image's
/// release.
const COMMAND: &str = "echo built on %(prop:workername)s as $(id -un) on host $(hostname); \
    test -s /var/lib/cloud/instance/user-data.txt && echo user data from cloud-init; \
    . /etc/os-release && echo on $ID $VERSION_CODENAME";

fn config(cloud: &Cloud, pb: &str) -> String {
    format!(
        r#"
[[latent_pool]]
name = "cloud"
driver = "ec2"
poll_interval = 1
master_address = "{pb}"
build_wait_timeout = 5

[latent_pool.ec2]
region = "us-east-1"
endpoint_url = "{url}"
instance_type = "t3.micro"
ami = "{IMAGE}"

[[builder]]
name = "job"
workers = ["cloud"]

[[builder.step]]
command = "{COMMAND}"
"#,
        url = cloud.proxy.url(),
    )
}

#[test]
fn the_default_user_data_boots_a_stock_image_through_cloud_init_and_builds() {
    if let Some(why) = cannot_run() {
        println!("skipped: {why}");
        return;
    }
    let stock = stock_image_dir();
    assert!(
        stock.join(".done").exists(),
        "no stock image at {}: run scripts/install-stock-image.sh",
        stock.display()
    );
    let host_name = hostname();
    let dir = test_dir("ec2-stock");
    let cloud = Cloud::start(
        &dir,
        BootPolicy {
            stock: Some(StockBoot {
                rootfs_tar: stock.join("rootfs.tar"),
            }),
            ..BootPolicy::default()
        },
    );
    // The config names the master's PB address: start, then rewrite.
    let mut master = MasterProcess::start(&dir.join("master"), "", "");
    master.set_body(&config(&cloud, &master.pb.to_string()));
    master.restart();

    let r = master.wait_request(master.force("job"), LONG);
    let launched = cloud.moto.instances();
    assert_eq!(launched.len(), 1, "{launched:?}");
    let cloud_id = launched[0].id.clone();
    let home = dir.join("instances").join(&cloud_id);
    assert_eq!(
        r["result"],
        "success",
        "{r}\n{}\nboot log:\n{}",
        master.log(),
        std::fs::read_to_string(home.join("boot.log")).unwrap_or_default()
    );
    let build = &r["builds"][0];
    let worker = build["worker"].as_str().expect("worker").to_owned();
    let out = master.output(build["id"].as_i64().expect("build id"), 1, "stdout");
    assert!(
        out.contains(&format!("built on {worker} as buildbot on host {cloud_id}")),
        "{out}"
    );
    assert!(out.contains("user data from cloud-init"), "{out}");
    assert!(out.contains("on debian"), "{out}");
    assert_eq!(hostname(), host_name, "the host's name is untouched");

    // The credentials the worker used were the instance's own, and one-time.
    let root = home.join("root");
    let password = tac_password(&root);
    assert!(!password.is_empty() && password != "pending");

    // Idle past build_wait_timeout: terminated, and nothing of it left running.
    let ended = wait_all_ended(&master);
    assert_eq!(ended.len(), 1, "{ended:?}");
    let p = phases(&ended[0]);
    assert!(
        p.ends_with(&["idle", "draining", "stopping", "stopped"].map(String::from)),
        "{p:?}"
    );
    cloud.wait_none_alive("cloud");
    wait::until("the instance's processes to end", LONG, || {
        processes_inside(&root).is_empty()
    });
    let refused = try_login(master.pb, &worker, &password).expect_err("a stale password");
    assert_eq!(refused.type_name, "twisted.cred.error.UnauthorizedLogin");
    master.terminate(Duration::from_secs(30));
    // The unpacked image is large; the logs stay for a look.
    std::fs::remove_dir_all(&root).expect("remove the instance's root");
}

fn hostname() -> String {
    let out = std::process::Command::new("hostname")
        .output()
        .expect("hostname");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The password cloud-init's script wrote into the worker's `buildbot.tac`.
fn tac_password(root: &Path) -> String {
    let tac = std::fs::read_to_string(root.join("var/lib/buildbot/worker/buildbot.tac"))
        .expect("buildbot.tac");
    tac.split("passwd = '")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("passwd line")
        .to_owned()
}
