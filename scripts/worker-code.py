"""KiB of an apus binary's code resident in one worker, as Tests/integration/test_memory.py
measures it: the hello example, one worker, 200 keep-alive requests, then the Rss of the
binary's r-xp mappings in /proc/PID/smaps. Extra arguments go to apus.

    .venv-test/bin/python scripts/worker-code.py .build/release/apus
    .venv-test/bin/python scripts/worker-code.py .build/release/apus --no-access-log --no-process-titles

Run it a few times per binary: where the kernel's 64 KiB fault-around windows fall moves the
figure by a few windows. Stdlib only; the venv running it is the workers' venv.
"""
import http.client
import os
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def code_kib(pid, binary):
    total, current = 0, False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5 and ":" in fields[3]:
                current = len(fields) >= 6 and os.path.realpath(fields[5]) == os.path.realpath(binary) \
                    and fields[1] == "r-xp"
            elif current and fields[0] == "Rss:":
                total += int(fields[1])
    return total


def main():
    binary, extra = sys.argv[1], sys.argv[2:]
    port = free_port()
    proc = subprocess.Popen([binary, "--venv", sys.prefix, "--chdir", os.path.join(REPO, "examples"),
                             "--http", f"127.0.0.1:{port}", "--processes", "1", *extra, "hello"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/")
                c.getresponse().read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit("apus did not answer within 30 s")
                time.sleep(0.1)
        for i in range(200):
            c.request("GET", f"/?i={i}")
            c.getresponse().read()
        c.close()
        children = [int(x) for x in open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()]
        workers = [p for p in children if open(f"/proc/{p}/comm").read().strip() not in ("zygote", "preloader")]
        print(" ".join(f"{code_kib(w, binary)}" for w in workers), "KiB", binary, *extra)
    finally:
        os.killpg(proc.pid, 15)
        proc.wait()


if __name__ == "__main__":
    main()
