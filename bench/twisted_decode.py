"""Decode a PB byte stream with Twisted's own banana (and jelly) for comparison with
pbwire's `wirebench decode`. Prints one JSON line in the same shape.

Usage: python twisted_decode.py FILE banana|pb REPEAT

The stream is fed in 64 KiB pieces as a socket would deliver it, to a Banana playing
the receiving side, so Twisted runs the dialect negotiation itself. At level `pb`, each message is unjellied the way Broker does it
(arguments and keywords separately, answers and failures as one value).
"""
import json
import sys
import time

from twisted.spread import pb

READ = 64 * 1024


class Collect(pb.Broker):
    """A Broker that unjellies (level pb) or just counts (level banana) each expression
    instead of dispatching it, unjellying the way Broker.proto_message does: arguments
    and keywords separately, with the broker as invoker (remote references)."""

    def __init__(self, level, is_client):
        pb.Broker.__init__(self, isClient=is_client)
        self.level = level
        self.count = 1  # the negotiation expression, which Banana consumes itself

    def connectionReady(self):
        # No factory to tell: this broker only reads a recorded stream.
        pass

    def expressionReceived(self, item):
        self.count += 1
        if self.level == "pb":
            kind = item[0]
            if kind in (b"message", b"cachemessage"):
                self.unserialize(item[5])
                self.unserialize(item[6])
            elif kind in (b"answer", b"error"):
                self.unserialize(item[2])


class NullTransport:
    """Swallows what the broker writes (its offer, version, decrefs)."""

    def write(self, data):
        pass

    def loseConnection(self):
        raise RuntimeError("Twisted dropped the stream")

    def setTcpKeepAlive(self, enabled):
        pass


def starts_with_list(data):
    """Whether the first element is a LIST: then the stream is the listener's (its
    dialect offer) and its reader is the client side of the negotiation."""
    for byte in bytearray(data):
        if byte >= 0x80:
            return byte == 0x80
    return False


def main():
    path, level, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(path, "rb") as f:
        data = f.read()
    count = 0
    start = time.perf_counter()
    for _ in range(repeat):
        b = Collect(level, starts_with_list(data))
        b.makeConnection(NullTransport())
        for i in range(0, len(data), READ):
            b.dataReceived(data[i:i + READ])
        count += b.count
    seconds = time.perf_counter() - start
    total = len(data) * repeat
    print(json.dumps({"impl": "twisted", "level": level, "bytes": total, "seconds": round(seconds, 6),
                      "mb_per_s": round(total / seconds / 1e6, 2), "expressions": count}))


if __name__ == "__main__":
    main()
