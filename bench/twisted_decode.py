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

from twisted.spread import banana, jelly, pb

READ = 64 * 1024


class Collect(banana.Banana):
    """A Banana that unjellies (or just counts) each expression instead of dispatching."""

    def __init__(self, level, is_client):
        banana.Banana.__init__(self, isClient=is_client)
        self.level = level
        self.count = 1  # the negotiation expression, which Banana consumes itself
        self.security = jelly.globalSecurity

    def expressionReceived(self, item):
        self.count += 1
        if self.level == "pb":
            kind = item[0]
            if kind in (b"message", b"cachemessage"):
                jelly.unjelly(item[5], self.security, None)
                jelly.unjelly(item[6], self.security, None)
            elif kind in (b"answer", b"error"):
                jelly.unjelly(item[2], self.security, None)


class NullTransport:
    def write(self, data):
        pass

    def loseConnection(self):
        raise RuntimeError("Twisted dropped the stream")


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
        b.transport = NullTransport()
        b.connectionMade()
        for i in range(0, len(data), READ):
            b.dataReceived(data[i:i + READ])
        count += b.count
    seconds = time.perf_counter() - start
    total = len(data) * repeat
    print(json.dumps({"impl": "twisted", "level": level, "bytes": total, "seconds": round(seconds, 6),
                      "mb_per_s": round(total / seconds / 1e6, 2), "expressions": count}))


if __name__ == "__main__":
    main()
