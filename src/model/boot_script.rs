//! Boot scripts (user data) with the instance's connection details filled in. A
//! script is parsed once, when the configuration is read, so an unknown variable is a
//! config error and filling one in cannot fail.

/// What a script may use, as `{{name}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variable {
    Master,
    MasterHost,
    MasterPort,
    Name,
    Password,
    Pool,
    Venv,
}

impl Variable {
    const ALL: [(&'static str, Variable); 7] = [
        ("master", Variable::Master),
        ("master_host", Variable::MasterHost),
        ("master_port", Variable::MasterPort),
        ("name", Variable::Name),
        ("password", Variable::Password),
        ("pool", Variable::Pool),
        ("venv", Variable::Venv),
    ];

    fn named(name: &str) -> Option<Variable> {
        Variable::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }
}

/// The values an instance's script is rendered with.
#[derive(Debug, Clone, Default)]
pub struct BootVars {
    /// Where the instance reaches the master, `host:port`.
    pub master: String,
    pub master_host: String,
    pub master_port: String,
    /// The instance's worker name.
    pub name: String,
    /// Its one-time password.
    pub password: String,
    pub pool: String,
    /// The local driver's venv (empty for other drivers).
    pub venv: String,
}

impl BootVars {
    fn get(&self, v: Variable) -> &str {
        match v {
            Variable::Master => &self.master,
            Variable::MasterHost => &self.master_host,
            Variable::MasterPort => &self.master_port,
            Variable::Name => &self.name,
            Variable::Password => &self.password,
            Variable::Pool => &self.pool,
            Variable::Venv => &self.venv,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Variable(Variable),
}

/// A parsed boot script template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootScript {
    pieces: Vec<Piece>,
}

/// Shell lines that write the one-time password into `buildbot.tac` with `$python`,
/// from a here-document rather than `create-worker`'s arguments: those show in every
/// process listing of the host, and containers' and local instances' processes are
/// the host's.
macro_rules! write_password {
    ($python:literal) => {
        concat!(
            $python,
            r#" - worker/buildbot.tac <<'EOF'
import re, sys
path = sys.argv[1]
tac = open(path).read()
tac = re.sub(r"(?m)^passwd = .*$", "passwd = '{{password}}'", tac, count=1)
open(path, "w").write(tac)
EOF
"#
        )
    };
}

/// Shell lines for a stock image (ec2, docker): python3-venv if missing, an
/// unprivileged `buildbot` user, buildbot-worker in a venv, the worker created with
/// the instance's name and one-time password.
macro_rules! install_worker {
    () => {
        concat!(
            r#"if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  apt-get update -q
  apt-get install -y -q python3-venv
fi
id buildbot >/dev/null 2>&1 || useradd --system --create-home --home-dir /var/lib/buildbot buildbot
cd /var/lib/buildbot
runuser -u buildbot -- python3 -m venv venv
runuser -u buildbot -- venv/bin/pip install -q buildbot-worker
runuser -u buildbot -- venv/bin/buildbot-worker create-worker --keepalive=60 worker '{{master}}' '{{name}}' pending
"#,
            write_password!("runuser -u buildbot -- venv/bin/python")
        )
    };
}

/// The local driver's default: create a buildbot-worker in the instance's folder and
/// run it in the foreground, from the venv the pool names.
pub const LOCAL_DEFAULT: &str = concat!(
    r#"#!/bin/sh
set -e
"{{venv}}/bin/buildbot-worker" create-worker --keepalive=60 worker "{{master}}" "{{name}}" pending
"#,
    write_password!(r#""{{venv}}/bin/python""#),
    r#"cd worker
exec "{{venv}}/bin/twistd" --nodaemon --no_save --pidfile= -y buildbot.tac
"#
);

/// The ec2 driver's default: user data for a stock Ubuntu or Debian image. cloud-init
/// runs it once as root at first boot; it installs buildbot-worker in a venv, runs the
/// worker as an unprivileged user, and powers the machine off when the worker ends (the
/// instance is launched to terminate on shutdown, so nothing lingers). A pre-baked image
/// needs only its last lines as `boot_script`.
pub const EC2_DEFAULT: &str = concat!(
    r#"#!/bin/sh
# pbmaster latent instance {{name}} of pool {{pool}}
set -eu
export DEBIAN_FRONTEND=noninteractive
trap 'poweroff' EXIT
"#,
    install_worker!(),
    r#"cd worker
runuser -u buildbot -- ../venv/bin/twistd --nodaemon --no_save --pidfile= -y buildbot.tac
"#
);

/// The docker driver's default: user data for a stock image with python3 and
/// cloud-init (Debian, Ubuntu). It installs buildbot-worker in a venv (pip honours the
/// container's `PIP_*` variables, e.g. a wheel folder mounted into the container) and
/// runs the worker as an unprivileged user in the foreground: the container ends when
/// the worker does.
pub const DOCKER_DEFAULT: &str = concat!(
    r#"#!/bin/sh
# pbmaster latent instance {{name}} of pool {{pool}}
set -eu
export DEBIAN_FRONTEND=noninteractive
"#,
    install_worker!(),
    r#"cd worker
exec runuser -u buildbot -- ../venv/bin/twistd --nodaemon --no_save --pidfile= -y buildbot.tac
"#
);

impl BootScript {
    /// Parses `{{var}}` placeholders; an unknown or unterminated one is an error.
    pub fn parse(template: &str) -> Result<BootScript, String> {
        let mut pieces = Vec::new();
        let mut rest = template;
        while let Some(i) = rest.find("{{") {
            pieces.push(Piece::Text(rest[..i].to_owned()));
            let after = &rest[i + 2..];
            let end = after
                .find("}}")
                .ok_or("unterminated {{ in the boot script")?;
            let name = after[..end].trim();
            let variable = Variable::named(name)
                .ok_or_else(|| format!("unknown variable {{{{{name}}}}} in the boot script"))?;
            pieces.push(Piece::Variable(variable));
            rest = &after[end + 2..];
        }
        pieces.push(Piece::Text(rest.to_owned()));
        Ok(BootScript { pieces })
    }

    /// The script with every placeholder replaced.
    pub fn render(&self, vars: &BootVars) -> String {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.as_str(),
                Piece::Variable(v) => vars.get(*v),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_variables_and_refuses_unknown_ones() {
        let vars = BootVars {
            name: "p-1".into(),
            password: "s3cret".into(),
            ..BootVars::default()
        };
        let script = BootScript::parse("worker {{name}} {{ password }}").unwrap();
        assert_eq!(script.render(&vars), "worker p-1 s3cret");
        assert!(BootScript::parse("{{nope}}").is_err());
        assert!(BootScript::parse("{{name").is_err());
    }

    #[test]
    fn the_default_templates_render_to_valid_shell() {
        let vars = BootVars {
            master: "x-master".into(),
            master_host: "x-master_host".into(),
            master_port: "x-master_port".into(),
            name: "x-name".into(),
            password: "x-password".into(),
            pool: "x-pool".into(),
            venv: "x-venv".into(),
        };
        for template in [LOCAL_DEFAULT, EC2_DEFAULT, DOCKER_DEFAULT] {
            let script = BootScript::parse(template).unwrap().render(&vars);
            assert!(script.contains("'x-password'") || script.contains("\"x-password\""));
            let checked = std::process::Command::new("sh")
                .args(["-n", "-c", &script])
                .status()
                .unwrap();
            assert!(checked.success(), "{script}");
        }
    }
}
