//! `startCommand` arguments for a shell step, in the form the worker's command
//! version expects (the table in the protocol reference, §5.9), with properties
//! interpolated into every string: shell-quoted in a command string (it runs through
//! `/bin/sh -c`), as they are in argv items, env values and paths.

use super::properties::{Properties, RenderError};
use crate::config::{CommandLine, ShellStep};
use crate::worker::CommandVersion;
use pbwire::jelly::Value;
use std::collections::BTreeMap;

/// What a shell command needs, after interpolation.
#[derive(Debug, Clone, PartialEq)]
pub struct ShellCommand {
    pub command: CommandLine,
    pub workdir: String,
    pub env: BTreeMap<String, String>,
    pub logfiles: BTreeMap<String, String>,
    pub timeout: Option<u64>,
    pub max_time: Option<u64>,
    pub interrupt_signal: Option<String>,
}

impl ShellCommand {
    /// A shell step's command with its properties rendered.
    pub fn from_step(step: &ShellStep, props: &Properties) -> Result<ShellCommand, RenderError> {
        let command = match &step.command {
            CommandLine::Shell(s) => CommandLine::Shell(props.render_shell(s)?),
            CommandLine::Argv(argv) => CommandLine::Argv(
                argv.iter()
                    .map(|a| props.render(a))
                    .collect::<Result<_, _>>()?,
            ),
        };
        let render_map =
            |m: &BTreeMap<String, String>| -> Result<BTreeMap<String, String>, RenderError> {
                m.iter()
                    .map(|(k, v)| Ok((k.clone(), props.render(v)?)))
                    .collect()
            };
        Ok(ShellCommand {
            command,
            workdir: props.render(&step.workdir)?,
            env: render_map(&step.env)?,
            logfiles: render_map(&step.logfiles)?,
            timeout: Some(step.timeout),
            max_time: step.max_time,
            interrupt_signal: step.interrupt_signal.clone(),
        })
    }

    /// An argv command in `workdir` with the defaults (used by the git step).
    pub fn argv(workdir: &str, argv: &[&str], timeout: u64) -> ShellCommand {
        ShellCommand {
            command: CommandLine::Argv(argv.iter().map(|a| a.to_string()).collect()),
            workdir: workdir.to_owned(),
            env: BTreeMap::new(),
            logfiles: BTreeMap::new(),
            timeout: Some(timeout),
            max_time: None,
            interrupt_signal: None,
        }
    }

    /// The argument dictionary of `startCommand(ref, id, "shell", args)`.
    pub fn args(&self, commands: &BTreeMap<String, String>) -> Vec<(Value, Value)> {
        let version = commands.get("shell").map(|v| CommandVersion::parse(v));
        let t = |s: &str| Value::text(s);
        let map = |m: &BTreeMap<String, String>| {
            Value::Dict(m.iter().map(|(k, v)| (t(k), t(v))).collect())
        };
        let mut args = vec![
            (t("workdir"), t(&self.workdir)),
            (
                t("command"),
                match &self.command {
                    CommandLine::Shell(s) => t(s),
                    CommandLine::Argv(argv) => Value::List(argv.iter().map(|a| t(a)).collect()),
                },
            ),
            (
                t("env"),
                if self.env.is_empty() {
                    Value::None
                } else {
                    map(&self.env)
                },
            ),
            (t("want_stdout"), Value::Bool(true)),
            (t("want_stderr"), Value::Bool(true)),
            (t("logfiles"), map(&self.logfiles)),
            (
                t("timeout"),
                self.timeout.map_or(Value::None, |s| Value::int(s as i64)),
            ),
            (
                t("maxTime"),
                self.max_time.map_or(Value::None, |s| Value::int(s as i64)),
            ),
            (t("logEnviron"), Value::Bool(true)),
        ];
        match version {
            // A worker too old to report versions also wants the workdir as `dir`.
            None => args.push((t("dir"), t(&self.workdir))),
            // Before 2.7 the master may not set usePTY at all.
            Some(v) if v.below(2, 7) => {}
            // Before 3.0, "slave-config" defers to the worker's own setting; 3.x needs a bool.
            Some(v) if v.below(3, 0) => args.push((t("usePTY"), t("slave-config"))),
            Some(_) => args.push((t("usePTY"), Value::Bool(false))),
        }
        if let Some(signal) = &self.interrupt_signal {
            if version.is_some_and(|v| !v.below(2, 15)) {
                args.push((t("interruptSignal"), t(signal)));
            }
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step() -> ShellStep {
        let config = crate::config::parse(
            "[master]\ndata_dir='d'\n[[worker]]\nname='w'\npassword='p'\n[[builder]]\nname='b'\nworkers=['w']\n\
             [[builder.step]]\ncommand=['make','-j%(prop:jobs)s']\ninterrupt_signal='TERM'\n",
        )
        .unwrap();
        match &config.builders[0].steps[0].action {
            crate::config::Step::Shell(shell) => shell.clone(),
            other => panic!("not a shell step: {other:?}"),
        }
    }

    fn props() -> Properties {
        let mut p = Properties::default();
        p.set("jobs", serde_json::json!(2), "test");
        p
    }

    fn get<'a>(args: &'a [(Value, Value)], key: &str) -> Option<&'a Value> {
        args.iter().find(|(k, _)| k.is_str(key)).map(|(_, v)| v)
    }

    #[test]
    fn modern_workers_get_a_bool_pty_and_the_signal() {
        let commands = BTreeMap::from([("shell".to_owned(), "3.3".to_owned())]);
        let args = ShellCommand::from_step(&step(), &props())
            .unwrap()
            .args(&commands);
        assert_eq!(get(&args, "usePTY"), Some(&Value::Bool(false)));
        assert_eq!(get(&args, "interruptSignal"), Some(&Value::text("TERM")));
        assert_eq!(
            get(&args, "command"),
            Some(&Value::List(vec![Value::text("make"), Value::text("-j2")]))
        );
    }

    #[test]
    fn legacy_workers_get_slave_config() {
        let cmd = ShellCommand::from_step(&step(), &props()).unwrap();
        let commands = BTreeMap::from([("shell".to_owned(), "2.16".to_owned())]);
        assert_eq!(
            get(&cmd.args(&commands), "usePTY"),
            Some(&Value::text("slave-config"))
        );
        let old = BTreeMap::from([("shell".to_owned(), "2.14".to_owned())]);
        assert_eq!(get(&cmd.args(&old), "interruptSignal"), None);
        assert!(get(&cmd.args(&BTreeMap::new()), "dir").is_some());
    }

    #[test]
    fn values_are_quoted_in_command_strings_only() {
        let config = crate::config::parse(
            "[master]\ndata_dir='d'\n[[worker]]\nname='w'\npassword='p'\n[[builder]]\nname='b'\nworkers=['w']\n\
             [[builder.step]]\ncommand='echo %(prop:x)s %(raw:x)s'\nenv={X='%(prop:x)s'}\nworkdir='%(prop:x)s'\n\
             [[builder.step]]\ncommand=['echo','%(prop:x)s']\n",
        )
        .unwrap();
        let mut p = Properties::default();
        p.set("x", serde_json::json!("a'b"), "force");
        let cmd = |i: usize| match &config.builders[0].steps[i].action {
            crate::config::Step::Shell(shell) => ShellCommand::from_step(shell, &p).unwrap(),
            other => panic!("not a shell step: {other:?}"),
        };
        let string = cmd(0);
        assert_eq!(
            string.command,
            CommandLine::Shell("echo 'a'\\''b' a'b".into())
        );
        assert_eq!(string.env["X"], "a'b");
        assert_eq!(string.workdir, "a'b");
        assert_eq!(
            cmd(1).command,
            CommandLine::Argv(vec!["echo".into(), "a'b".into()])
        );
    }

    #[test]
    fn missing_properties_fail_the_rendering() {
        assert!(ShellCommand::from_step(&step(), &Properties::default()).is_err());
    }
}
