//! One ec2 test's cloud and master: moto behind a fault-injecting proxy, the
//! simulator booting what it runs, and a master whose pool launches there.

use super::ec2::{BootPolicy, FaultProxy, Moto, Simulator};
use super::master::MasterProcess;
use super::workers::Generation;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

pub const LONG: Duration = Duration::from_secs(120);

/// The cloud side of one test: emulator, proxy in front of it, simulator behind it.
pub struct Cloud {
    pub moto: Moto,
    pub proxy: FaultProxy,
    pub sim: Simulator,
}

impl Cloud {
    /// Waits until exactly `ids` are alive in the cloud.
    pub fn wait_alive_exactly(&self, ids: &[&str]) {
        let deadline = Instant::now() + LONG;
        loop {
            let alive: Vec<String> = self.moto.alive().into_iter().map(|i| i.id).collect();
            if alive == ids {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "alive: {alive:?}, expected {ids:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn start(dir: &Path, policy: BootPolicy) -> Cloud {
        std::fs::create_dir_all(dir).expect("dir");
        let moto = Moto::start(&dir.join("moto.log"));
        let proxy = FaultProxy::start(moto.port);
        let sim = Simulator::start(moto.port, &dir.join("instances"), policy);
        Cloud { moto, proxy, sim }
    }

    /// Instances of pool `pool` not terminated.
    pub fn alive_in(&self, pool: &str) -> usize {
        self.moto
            .alive()
            .iter()
            .filter(|i| i.tags.get("pbmaster:pool").map(String::as_str) == Some(pool))
            .count()
    }

    pub fn wait_none_alive(&self, pool: &str) {
        let deadline = Instant::now() + LONG;
        while self.alive_in(pool) > 0 {
            assert!(
                Instant::now() < deadline,
                "instances left: {:?}",
                self.moto.alive()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A pool of up to `max` instances: the user data is the two-line template of a
/// pre-baked image (here: the test's worker venv), as a user with their own image
/// would write it.
pub fn config(cloud: &Cloud, pb: &str, pool_extra: &str, ec2_extra: &str) -> String {
    let venv = Generation::Worker4.venv();
    format!(
        r#"
[[latent_pool]]
name = "cloud"
driver = "ec2"
poll_interval = 1
master_address = "{pb}"
boot_script = '''
rm -rf worker
"{venv}/bin/buildbot-worker" create-worker worker "{{{{master}}}}" "{{{{name}}}}" "{{{{password}}}}"
cd worker && exec "{venv}/bin/twistd" --nodaemon --no_save --pidfile= -y buildbot.tac
'''
{pool_extra}

[latent_pool.ec2]
region = "us-east-1"
endpoint_url = "{url}"
{kind}
{ec2_extra}

[[builder]]
name = "job"
workers = ["cloud"]

[[builder.step]]
command = "sleep 1; echo built on %(prop:workername)s"
"#,
        venv = venv.display(),
        url = cloud.proxy.url(),
        // One type unless the test lists several.
        kind = if ec2_extra.contains("instance_types") {
            ""
        } else {
            "instance_type = \"t3.micro\""
        },
    )
}

pub fn start_master(dir: &Path, cloud: &Cloud, pool_extra: &str, ec2_extra: &str) -> MasterProcess {
    start_master_with(dir, cloud, pool_extra, ec2_extra, "")
}

/// [`start_master`] with `more` (builders, say) added to the config.
pub fn start_master_with(
    dir: &Path,
    cloud: &Cloud,
    pool_extra: &str,
    ec2_extra: &str,
    more: &str,
) -> MasterProcess {
    // The config needs the PB address before the master picks it: start, then rewrite.
    let mut master = MasterProcess::start(&dir.join("master"), "", "");
    let body = config(cloud, &master.pb.to_string(), pool_extra, ec2_extra) + more;
    master.set_body(&body);
    master.restart();
    master
}

pub fn wait_all_ended(master: &MasterProcess) -> Vec<Value> {
    super::latent::wait_all_ended(master, LONG)
}

/// The password in an instance's user data (`create-worker worker MASTER NAME PASSWORD`).
pub fn password_of(dir: &Path, cloud_id: &str) -> String {
    let script = std::fs::read_to_string(dir.join("instances").join(cloud_id).join("user-data.sh"))
        .expect("user data");
    script.split('"').nth(7).expect("password").to_owned()
}
