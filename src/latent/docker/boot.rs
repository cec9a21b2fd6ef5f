//! How a container boots: its user data goes in as files (a NoCloud seed for
//! cloud-init, or a plain script), copied into the container before it starts. The
//! boot script is never part of the container's command line or environment, where
//! `docker inspect` and the host's process list would show the instance's password.

use crate::latent::driver::LaunchSpec;

/// Where cloud-init's NoCloud datasource looks for a seed on the root file system.
pub const SEED_DIR: &str = "var/lib/cloud/seed/nocloud";
/// The boot script's path when cloud-init is off.
pub const PLAIN_SCRIPT: &str = "var/lib/pbmaster/user-data";

/// The container's command with cloud-init: its boot stages in order, as an init
/// system would run them. Each stage runs even if one before reported a problem (a
/// module that cannot work in a container, such as setting the host name, fails its
/// stage without stopping the boot); the last stage runs the user data and lasts as
/// long as it does. Fixed text: nothing of the instance is in it.
pub const CLOUD_INIT_COMMAND: &str = "cloud-init init --local; cloud-init init; \
     cloud-init modules --mode config; exec cloud-init modules --mode final";

/// The container's command.
pub fn command(cloud_init: bool) -> Vec<String> {
    let script = if cloud_init {
        CLOUD_INIT_COMMAND.to_owned()
    } else {
        format!("exec /bin/sh /{PLAIN_SCRIPT}")
    };
    vec!["/bin/sh".into(), "-c".into(), script]
}

/// A tar archive, to extract at `/`, holding the instance's user data: the NoCloud
/// `meta-data` and `user-data` files, or the plain script. Readable by root alone.
pub fn seed_archive(spec: &LaunchSpec, cloud_init: bool) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, mode: u32, body: &[u8]| -> std::io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, path, body)
    };
    if cloud_init {
        add(
            &format!("{SEED_DIR}/meta-data"),
            0o600,
            meta_data(spec).as_bytes(),
        )?;
        add(
            &format!("{SEED_DIR}/user-data"),
            0o600,
            spec.user_data.as_bytes(),
        )?;
    } else {
        add(PLAIN_SCRIPT, 0o700, spec.user_data.as_bytes())?;
    }
    tar.into_inner()
}

/// NoCloud `meta-data`: the instance's id (a new one per launch, so cloud-init runs
/// its once-per-instance modules) and host name, as YAML double-quoted strings (JSON
/// strings are valid ones), so no name can add YAML of its own.
fn meta_data(spec: &LaunchSpec) -> String {
    let quote = |s: &str| serde_json::Value::from(s).to_string();
    format!(
        "instance-id: {}\nlocal-hostname: {}\n",
        quote(&spec.client_token),
        quote(&spec.name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn spec() -> LaunchSpec {
        LaunchSpec {
            name: "pool-1".into(),
            pool: "pool".into(),
            user_data: "#!/bin/sh\necho 'it is $HOME'\n".into(),
            client_token: "pool-1-\"x\ny: 1".into(),
            on_demand: false,
        }
    }

    fn entries(archive: &[u8]) -> Vec<(String, u32, String)> {
        let mut tar = tar::Archive::new(archive);
        tar.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = e.path().unwrap().display().to_string();
                let mode = e.header().mode().unwrap();
                let mut body = String::new();
                e.read_to_string(&mut body).unwrap();
                (path, mode, body)
            })
            .collect()
    }

    #[test]
    fn a_nocloud_seed_carries_the_script_as_is_and_quoted_meta_data() {
        let files = entries(&seed_archive(&spec(), true).unwrap());
        assert_eq!(files.len(), 2);
        let (path, mode, meta) = &files[0];
        assert_eq!(
            (path.as_str(), *mode),
            ("var/lib/cloud/seed/nocloud/meta-data", 0o600)
        );
        // The token's quote and newline stay inside one YAML string.
        assert_eq!(
            meta,
            "instance-id: \"pool-1-\\\"x\\ny: 1\"\nlocal-hostname: \"pool-1\"\n"
        );
        assert_eq!(meta.lines().count(), 2);
        let (path, mode, user) = &files[1];
        assert_eq!(
            (path.as_str(), *mode),
            ("var/lib/cloud/seed/nocloud/user-data", 0o600)
        );
        assert_eq!(user, &spec().user_data);
    }

    #[test]
    fn without_cloud_init_the_script_is_a_file_the_fixed_command_runs() {
        let files = entries(&seed_archive(&spec(), false).unwrap());
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].0, PLAIN_SCRIPT);
        assert_eq!(files[0].2, spec().user_data);
        for cloud_init in [true, false] {
            let cmd = command(cloud_init);
            assert!(!cmd.concat().contains("echo"), "{cmd:?}");
        }
        assert_eq!(
            command(false)[2],
            "exec /bin/sh /var/lib/pbmaster/user-data"
        );
    }
}
