# Loads a buildbot master.cfg with the installed buildbot package, exactly as the
# buildbot master does (buildbot.config.master.loadConfigDict: exec with `basedir` and
# `__file__`, the basedir on sys.path, from the basedir), and prints a JSON description
# of BuildmasterConfig on stdout for `pbmaster import-buildbot`.
#
# Objects are described by the arguments they were built with (recorded by wrapping
# the constructors of buildbot's own classes before the config runs), so the importer
# sees what the config says rather than buildbot's internal state. Latent workers are
# recorded without running their constructors: those would need cloud libraries and
# credentials.
#
# Usage: python helper.py BASEDIR CONFIG_FILE_NAME

import importlib
import inspect
import json
import os
import sys

RECORD = "_pbmaster_import_record"

# A step class's result flags, whose defaults differ between classes.
FLAGS = [
    "haltOnFailure",
    "flunkOnFailure",
    "warnOnFailure",
    "flunkOnWarnings",
    "warnOnWarnings",
    "alwaysRun",
]

MODULES = [
    "buildbot.util.service",
    "buildbot.config.builder",
    "buildbot.changes.base",
    "buildbot.changes.filter",
    "buildbot.changes.pb",
    "buildbot.changes.gitpoller",
    "buildbot.changes.hgpoller",
    "buildbot.changes.svnpoller",
    "buildbot.changes.p4poller",
    "buildbot.changes.bitbucket",
    "buildbot.changes.github",
    "buildbot.changes.gerritchangesource",
    "buildbot.changes.mail",
    "buildbot.schedulers.base",
    "buildbot.schedulers.basic",
    "buildbot.schedulers.timed",
    "buildbot.schedulers.forcesched",
    "buildbot.schedulers.triggerable",
    "buildbot.schedulers.dependent",
    "buildbot.schedulers.trysched",
    "buildbot.steps.shellsequence",
    "buildbot.worker.base",
    "buildbot.worker.latent",
    "buildbot.worker.local",
    "buildbot.worker.ec2",
    "buildbot.worker.docker",
    "buildbot.worker.kubernetes",
    "buildbot.worker.openstack",
    "buildbot.worker.libvirt",
    "buildbot.worker.upcloud",
    "buildbot.worker.marathon",
    "buildbot.secrets.providers.file",
    "buildbot.secrets.providers.passwordstore",
    "buildbot.secrets.providers.vault_hvac",
]


def record_constructors():
    """Wrap the __init__ of every class defined in MODULES so each instance keeps the
    arguments it was first constructed with."""
    latent = None
    try:
        from buildbot.worker.latent import AbstractLatentWorker

        latent = AbstractLatentWorker
    except Exception:
        pass
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except Exception:
            continue
        for cls in list(vars(module).values()):
            if not inspect.isclass(cls) or cls.__module__ != name:
                continue
            if "__init__" not in vars(cls):
                continue
            cls.__init__ = wrap(cls.__init__, latent)


def wrap(init, latent):
    def __init__(self, *args, **kwargs):
        # Latent workers of a cloud are only recorded: building one would need the
        # cloud's library and credentials.
        skip = (
            latent is not None
            and isinstance(self, latent)
            and type(self).__module__ not in ("buildbot.worker.latent", "buildbot.worker.local")
        )
        if RECORD not in vars(self):
            candidates = [init] + [
                vars(c)["checkConfig"] for c in type(self).__mro__ if "checkConfig" in vars(c)
            ]
            object.__setattr__(self, RECORD, bind_first(candidates, (self, *args), kwargs))
        if skip:
            # Enough of a worker for the config to go on (builders name it).
            vars(self)["name"] = args[0] if args else kwargs.get("name")
            return None
        return init(self, *args, **kwargs)

    __init__.__wrapped__ = init
    return __init__


def bind_first(functions, args, kwargs):
    """Binds with the first function that names its parameters: buildbot's services
    take (*args, **kwargs) in __init__ and name them in checkConfig."""
    for function in functions:
        try:
            params = inspect.signature(function).parameters.values()
        except (TypeError, ValueError):
            continue
        if all(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in list(params)[1:]):
            continue
        return bind(function, args, kwargs)
    return bind(functions[0], args, kwargs)


def bind(function, args, kwargs):
    """The arguments by parameter name (positional ones too); extra positional ones
    under "*", keyword ones a `**kwargs` took keep their own names."""
    try:
        bound = inspect.signature(function).bind(*args, **kwargs)
    except (TypeError, ValueError):
        return dict(kwargs, **({"*": list(args[1:])} if len(args) > 1 else {}))
    named = {}
    params = list(inspect.signature(function).parameters.values())
    for index, (name, value) in enumerate(bound.arguments.items()):
        kind = next(p.kind for p in params if p.name == name)
        if index == 0:
            continue  # self
        if kind == inspect.Parameter.VAR_KEYWORD:
            named.update(value)
        elif kind == inspect.Parameter.VAR_POSITIONAL:
            if value:
                named["*"] = list(value)
        else:
            named[name] = value
    return named


def describe(value, depth=0):
    """A JSON-able description; every object says what it is with "$t"."""
    if depth > 30:
        return {"$t": "object", "class": "...", "module": "", "repr": "(nested too deep)"}
    d = depth + 1
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple, set, frozenset)):
        return [describe(v, d) for v in value]
    if isinstance(value, dict):
        return {"$t": "dict", "items": [[describe(k, d), describe(v, d)] for k, v in value.items()]}

    from buildbot.process import properties as p
    from buildbot.process.buildstep import BuildStep, _BuildStepFactory
    from buildbot.process.factory import BuildFactory

    if isinstance(value, p.Interpolate):
        return {
            "$t": "interpolate",
            "fmt": describe(value.fmtstring, d),
            "args": [describe(a, d) for a in value.args],
            "kwargs": {str(k): describe(v, d) for k, v in value.kwargs.items()},
        }
    if isinstance(value, p.WithProperties):
        return {
            "$t": "withproperties",
            "fmt": describe(value.fmtstring, d),
            "args": [describe(a, d) for a in value.args],
            "lambda_subs": sorted(getattr(value, "lambda_subs", {}) or {}),
        }
    if isinstance(value, p.Property):
        return {
            "$t": "property",
            "name": describe(value.key, d),
            "default": describe(value.default, d),
        }
    if isinstance(value, p._SecretRenderer):
        return {"$t": "secret", "name": describe(value.secret_name, d)}
    if isinstance(value, p.FlattenList):
        return {"$t": "flatten", "items": describe(value.nestedlist, d)}
    if isinstance(value, BuildStep):
        value = value.get_step_factory()
    if isinstance(value, _BuildStepFactory):
        cls = value.step_class
        return {
            "$t": "step",
            "class": cls.__name__,
            "module": cls.__module__,
            "default_name": describe(getattr(cls, "name", None), d),
            "default_command": describe(getattr(cls, "command", None), d),
            "defaults": {flag: bool(getattr(cls, flag, False)) for flag in FLAGS},
            "kwargs": {
                str(k): describe(v, d)
                for k, v in bind(cls.__init__, (None, *value.args), value.kwargs).items()
            },
        }
    if isinstance(value, BuildFactory):
        return {
            "$t": "factory",
            "class": type(value).__name__,
            "module": type(value).__module__,
            "workdir": describe(value.workdir, d),
            "steps": [describe(s, d) for s in value.steps],
        }
    recorded = getattr(value, "__dict__", {}).get(RECORD)
    if recorded is not None:
        return {
            "$t": "obj",
            "class": type(value).__name__,
            "module": type(value).__module__,
            "kwargs": {str(k): describe(v, d) for k, v in recorded.items()},
        }
    if inspect.isroutine(value) or isinstance(value, type):
        return {"$t": "callable", "repr": getattr(value, "__qualname__", repr(value))}
    if isinstance(value, p._Renderer):
        fn = getattr(value, "getRenderingFor", None)
        return {"$t": "renderer", "repr": getattr(getattr(value, "fn", fn), "__qualname__", "renderer")}
    return {
        "$t": "object",
        "class": type(value).__name__,
        "module": type(value).__module__,
        "repr": safe_repr(value),
    }


def safe_repr(value):
    try:
        text = repr(value)
    except Exception:
        text = "<unrepresentable>"
    return text if len(text) <= 200 else text[:200] + "..."


def main():
    basedir, filename = sys.argv[1], sys.argv[2]
    basedir = os.path.abspath(os.path.expanduser(basedir))
    # What the config prints is not ours to pass on as data: stdout carries the JSON.
    out = sys.stdout
    sys.stdout = sys.stderr

    from twisted.python import log

    shown = set()

    def show_errors(event):
        if event.get("isError"):
            text = log.textFromEventDict(event)
            if text and text not in shown:
                shown.add(text)
                sys.stderr.write(text + "\n")

    log.addObserver(show_errors)

    record_constructors()
    from buildbot.config.errors import capture_config_errors
    from buildbot.config.master import loadConfigDict

    os.chdir(basedir)
    config = None
    with capture_config_errors() as errors:
        _, config = loadConfigDict(basedir, filename)
    warnings = list(errors.errors)
    if config is None:
        for message in warnings:
            sys.stderr.write(f"error: {message}\n")
        sys.exit(2)
    if not isinstance(config, dict):
        sys.stderr.write("error: BuildmasterConfig is not a dict\n")
        sys.exit(2)
    description = {
        "config": {str(k): describe(v) for k, v in config.items()},
        "warnings": warnings,
    }
    json.dump(description, out)
    out.write("\n")
    out.flush()


main()
