"""Rebuilds fuzz/corpus/<target>/ from the fixtures: every vector's bytes and every
recorded session stream seed the byte-level targets; every vector's expected
expressions seed the notation parser. Seeds are named by content hash, so re-running
is idempotent. Usage: python3 fuzz/seed-corpus.py
"""
import hashlib
import json
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures")
BYTE_TARGETS = ["banana_decode", "jelly_decode", "pb_decode", "roundtrip"]
MAX_LEN = 65536  # the -max_len fuzz/run.sh gives libFuzzer


def put(target, data):
    if not data or len(data) > MAX_LEN:
        return
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)


def main():
    shutil.rmtree(os.path.join(HERE, "corpus"), ignore_errors=True)
    for root, _, files in sorted(os.walk(os.path.join(FIXTURES, "vectors"))):
        for name in sorted(files):
            with open(os.path.join(root, name)) as f:
                fx = json.load(f)
            data = bytes.fromhex(fx["hex"])
            for t in BYTE_TARGETS:
                put(t, data)
            put("notation_parse", "\n".join(fx["sexp"]).encode())
    sessions = os.path.join(FIXTURES, "sessions")
    for name in sorted(os.listdir(sessions)) if os.path.isdir(sessions) else []:
        for direction in ("m2w", "w2m"):
            path = os.path.join(sessions, name, direction + ".bin")
            if os.path.exists(path):
                with open(path, "rb") as f:
                    data = f.read()
                for t in BYTE_TARGETS:
                    put(t, data[:MAX_LEN])
                put("broker", broker_script(direction, data))


def broker_script(direction, data):
    """A script for the broker target: the stream as the peer's input, in chunks,
    with the application accepting logins and answering calls between them. The
    worker's side (w2m) feeds a listener; the master's side (m2w) a connector that
    logs in first."""
    script = bytearray([0] if direction == "w2m" else [1, 8, 1])
    for i in range(0, len(data), 255):
        chunk = data[i:i + 255]
        script += bytes([0, len(chunk)]) + chunk + bytes([4, 0, 5, 0])
        if len(script) > MAX_LEN - 300:
            break
    return bytes(script)


if __name__ == "__main__":
    main()
