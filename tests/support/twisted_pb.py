"""Real Twisted Perspective Broker on the far end of pbwire's broker (tests/broker_twisted.rs).

    twisted_pb.py server
        Serves PB on 127.0.0.1, on a free port it prints as "port N", with a cred portal
        that knows alice/secret. Her avatar echoes, fails and calls back her mind. Runs
        until its stdin closes, so it never outlives the test that started it.

    twisted_pb.py client PORT
        Logs in to the PB server on 127.0.0.1:PORT as bob, first with a wrong password,
        then with "pw", passing a mind that answers ping; calls add, refuse, lookup and
        done on the avatar; prints one line per outcome; exits 0, or 1 on anything
        unexpected.

    twisted_pb.py example-client PORT
        The counterpart of pbwire's examples/server.rs: logs in to 127.0.0.1:PORT as
        alice, first with a wrong password, then with "secret", passing a mind that
        answers hello; waits for the server's call on the mind; calls add, divide (once
        dividing by zero) and echo on the avatar; prints one line per outcome; exits 0,
        or 1 on anything unexpected.

Twisted logs (its tracebacks included) go to stderr.
"""

import sys
import threading

from twisted.cred import checkers, credentials, error, portal
from twisted.internet import defer, reactor, task
from twisted.python import log
from twisted.spread import pb
from zope.interface import implementer


class Echoer(pb.Avatar):
    def __init__(self, name, mind):
        self.name = name
        self.mind = mind

    def perspective_echo(self, *args, **kwargs):
        return args, kwargs

    def perspective_types(self, *args):
        return [type(a).__qualname__ for a in args]

    def perspective_fail(self):
        raise ValueError("no good")

    def perspective_whoami(self):
        return self.name

    def perspective_callMind(self):
        return self.mind.callRemote("hello", "from twisted")


@implementer(portal.IRealm)
class Realm:
    def requestAvatar(self, avatar_id, mind, *interfaces):
        if pb.IPerspective not in interfaces:
            raise NotImplementedError(interfaces)
        return pb.IPerspective, Echoer(avatar_id, mind), lambda: None


def serve():
    checker = checkers.InMemoryUsernamePasswordDatabaseDontUse(alice=b"secret")
    factory = pb.PBServerFactory(portal.Portal(Realm(), [checker]))
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    print("port", port.getHost().port, flush=True)

    def wait_for_stdin_to_close():
        sys.stdin.buffer.read()
        reactor.callFromThread(reactor.stop)

    threading.Thread(target=wait_for_stdin_to_close, daemon=True).start()
    reactor.run()


class Mind(pb.Referenceable):
    def remote_ping(self, what):
        print("ping", repr(what), flush=True)
        return "pong", what


def outcome(d):
    """A Deferred firing with ("ok", value) or ("failed", failure)."""
    return d.addCallbacks(lambda v: ("ok", v), lambda f: ("failed", f))


def describe(result, expected_class):
    kind, what = result
    if kind == "ok":
        return "ok " + repr(what)
    name = what.type
    if isinstance(name, bytes):
        name = name.decode("utf-8")
    elif not isinstance(name, str):
        name = "%s.%s" % (name.__module__, name.__qualname__)
    return "failed %s %r is-%s=%s" % (
        name,
        what.getErrorMessage(),
        expected_class.__name__,
        bool(what.check(expected_class)),
    )


@defer.inlineCallbacks
def client(_reactor, port):
    factory = pb.PBClientFactory()
    reactor.connectTCP("127.0.0.1", int(port), factory, timeout=10)
    mind = Mind()
    bad = yield outcome(
        factory.login(credentials.UsernamePassword(b"bob", b"wrong"), client=mind)
    )
    print("bad-login", describe(bad, error.UnauthorizedLogin), flush=True)
    perspective = yield factory.login(
        credentials.UsernamePassword(b"bob", b"pw"), client=mind
    )
    print("login", type(perspective).__name__, flush=True)
    add = yield perspective.callRemote("add", 2, 3)
    print("add", repr(add), flush=True)
    refused = yield outcome(perspective.callRemote("refuse"))
    print("refuse", describe(refused, pb.Error), flush=True)
    lookup = yield outcome(perspective.callRemote("lookup", "nothing"))
    print("lookup", describe(lookup, KeyError), flush=True)
    done = yield perspective.callRemote("done")
    print("done", repr(done), flush=True)
    factory.disconnect()


class HelloMind(pb.Referenceable):
    def __init__(self):
        self.called = defer.Deferred()

    def remote_hello(self, greeting):
        print("hello", repr(greeting), flush=True)
        if not self.called.called:
            self.called.callback(None)
        return "hello from twisted, answering " + greeting


@defer.inlineCallbacks
def example_client(_reactor, port):
    factory = pb.PBClientFactory()
    reactor.connectTCP("127.0.0.1", int(port), factory, timeout=10)
    mind = HelloMind()
    bad = yield outcome(
        factory.login(credentials.UsernamePassword(b"alice", b"wrong"), client=mind)
    )
    print("bad-login", describe(bad, error.UnauthorizedLogin), flush=True)
    avatar = yield factory.login(
        credentials.UsernamePassword(b"alice", b"secret"), client=mind
    )
    print("login", type(avatar).__name__, flush=True)
    yield mind.called
    add = yield avatar.callRemote("add", 2, 3)
    print("add", repr(add), flush=True)
    divided = yield avatar.callRemote("divide", 7, 2)
    print("divide", repr(divided), flush=True)
    by_zero = yield outcome(avatar.callRemote("divide", 1, 0))
    print("divide-by-zero", describe(by_zero, ZeroDivisionError), flush=True)
    echoed = yield avatar.callRemote("echo", 1, "two", b"three", [4.5], four=None)
    print("echo", repr(echoed), flush=True)
    factory.disconnect()


def main():
    log.startLogging(sys.stderr, setStdout=False)
    if sys.argv[1:] == ["server"]:
        serve()
    elif len(sys.argv) == 3 and sys.argv[1] == "client":
        task.react(client, [sys.argv[2]])
    elif len(sys.argv) == 3 and sys.argv[1] == "example-client":
        task.react(example_client, [sys.argv[2]])
    else:
        sys.exit("usage: twisted_pb.py server | client PORT | example-client PORT")


if __name__ == "__main__":
    main()
