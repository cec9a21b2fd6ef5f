//! Boot scripts (user data) with the instance's connection details filled in.

use std::collections::BTreeMap;

/// The variables a template may use, as `{{name}}`.
pub const VARIABLES: [&str; 6] = [
    "master",
    "master_host",
    "master_port",
    "name",
    "password",
    "pool",
];

/// The local driver's default: create a buildbot-worker in the instance's folder and
/// run it in the foreground, from the venv the pool names.
pub const LOCAL_DEFAULT: &str = r#"#!/bin/sh
set -e
"{{venv}}/bin/buildbot-worker" create-worker --keepalive=60 worker "{{master}}" "{{name}}" "{{password}}"
cd worker
exec "{{venv}}/bin/twistd" --nodaemon --no_save --pidfile= -y buildbot.tac
"#;

/// The ec2 driver's default: user data for a stock Ubuntu or Debian image. cloud-init
/// runs it once as root at first boot; it installs buildbot-worker in a venv, runs the
/// worker as an unprivileged user, and powers the machine off when the worker ends (the
/// instance is launched to terminate on shutdown, so nothing lingers). A pre-baked image
/// needs only its last lines as `boot_script`.
pub const EC2_DEFAULT: &str = r#"#!/bin/sh
# pbmaster latent instance {{name}} of pool {{pool}}
set -eu
export DEBIAN_FRONTEND=noninteractive
trap 'poweroff' EXIT
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  apt-get update -q
  apt-get install -y -q python3-venv
fi
id buildbot >/dev/null 2>&1 || useradd --system --create-home --home-dir /var/lib/buildbot buildbot
cd /var/lib/buildbot
runuser -u buildbot -- python3 -m venv venv
runuser -u buildbot -- venv/bin/pip install -q buildbot-worker
runuser -u buildbot -- venv/bin/buildbot-worker create-worker --keepalive=60 worker '{{master}}' '{{name}}' '{{password}}'
cd worker
runuser -u buildbot -- ../venv/bin/twistd --nodaemon --no_save --pidfile= -y buildbot.tac
"#;

/// Replaces every `{{var}}`; an unknown variable is an error (checked at config time
/// with placeholder values).
pub fn render(template: &str, vars: &BTreeMap<&str, String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after
            .find("}}")
            .ok_or("unterminated {{ in the boot script")?;
        let name = after[..end].trim();
        let value = vars
            .get(name)
            .ok_or_else(|| format!("unknown variable {{{{{name}}}}} in the boot script"))?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_variables_and_refuses_unknown_ones() {
        let vars = BTreeMap::from([
            ("name", "p-1".to_owned()),
            ("password", "s3cret".to_owned()),
        ]);
        assert_eq!(
            render("worker {{name}} {{ password }}", &vars).unwrap(),
            "worker p-1 s3cret"
        );
        assert!(render("{{nope}}", &vars).is_err());
        assert!(render("{{name", &vars).is_err());
    }

    #[test]
    fn the_default_templates_render_to_valid_shell() {
        let vars: BTreeMap<&str, String> = VARIABLES
            .iter()
            .chain(&["venv"])
            .map(|v| (*v, format!("x-{v}")))
            .collect();
        for template in [LOCAL_DEFAULT, EC2_DEFAULT] {
            let script = render(template, &vars).unwrap();
            assert!(script.contains("'x-password'") || script.contains("\"x-password\""));
            let checked = std::process::Command::new("sh")
                .args(["-n", "-c", &script])
                .status()
                .unwrap();
            assert!(checked.success(), "{script}");
        }
    }
}
