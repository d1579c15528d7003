#!/usr/bin/env bash
# Regenerates link/apus.order: the functions a worker runs, listed so the linker puts them
# next to each other (see docs/architecture.md, "Memory of a worker").
#
# Every 64 KiB window of the binary's code that a worker touches is resident in that worker
# (the kernel maps code 64 KiB at a time), so the fewer windows the worker's code spans, the
# smaller each worker's RSS. The list comes from callgrind: apus serves the Django example
# and the hello app (lazy and --preload, 1 and 3 threads, HTTP and uwsgi) under valgrind,
# and every function that ran in a worker is kept, then every one that ran in the zygote, then
# in the master.
#
# Usage: scripts/order-file.sh [VENV]     (VENV: a venv with Django; default bench/.venv)
# Needs valgrind. A stale list only costs memory: names it no longer finds are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${1:-$ROOT/bench/.venv}
[ -x "$VENV/bin/python" ] || { echo "order-file.sh: no venv at $VENV (run bench/setup.sh)" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "order-file.sh: valgrind is not installed" >&2; exit 1; }

swift build -c release
WORK=$(mktemp -d)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$WORK"' EXIT; echo "work: $WORK"
# valgrind cannot read the DWARF swiftc writes; the symbol table is all it needs.
objcopy --strip-debug .build/release/apus "$WORK/apus"

serve() {  # serve NAME ARGS... : one apus under callgrind, some traffic, a graceful stop
    local name=$1; shift
    local sock="$WORK/$name.sock" out="$WORK/$name"
    local port
    port=$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    mkdir -p "$out"
    (exec setsid valgrind --tool=callgrind --compress-strings=no --compress-pos=no \
        --demangle=no --dump-instr=no \
        '--zero-before=fork' '--zero-before=__libc_fork' \
        --callgrind-out-file="$out/cg.%p" \
        "$WORK/apus" --venv "$VENV" --http "unix:$sock.http" --http "127.0.0.1:$port" --socket "unix:$sock" \
        --processes 2 "$@") > "$out/log" 2>&1 &
    local pid=$!
    "$VENV/bin/python" - "$sock" "$port" <<'PY'
import socket, sys, time
base, port = sys.argv[1], int(sys.argv[2])

def talk(path, data):
    for _ in range(600):
        try:
            if isinstance(path, int):
                s = socket.create_connection(("127.0.0.1", path))
            else:
                s = socket.socket(socket.AF_UNIX); s.connect(path)
            break
        except OSError:
            time.sleep(0.1)
    s.settimeout(60)
    s.sendall(data)
    got = b""
    while True:  # every exchange ends with the server closing
        b = s.recv(65536)
        if not b:
            break
        got += b
    s.close()
    return got

def uwsgi(path, query):
    env = {"REQUEST_METHOD": "GET", "PATH_INFO": "/debug/", "QUERY_STRING": query,
           "SERVER_NAME": "x", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
           "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "x"}
    body = b"".join(len(k).to_bytes(2, "little") + k.encode() + len(v).to_bytes(2, "little")
                    + v.encode() for k, v in env.items())
    return talk(path, bytes([0]) + len(body).to_bytes(2, "little") + bytes([0]) + body)

get = b"GET /debug/?a=1&b=two HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n%s\r\n"
for i in range(60):
    talk(base + ".http", get % b"" * 2 + get % b"Connection: close\r\n")
    talk(port, get % b"" * 2 + get % b"Connection: close\r\n")
    talk(base + ".http", b"POST /debug/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
         b"Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    talk(base + ".http", b"HEAD / HTTP/1.0\r\n\r\n")
    talk(base + ".http", b"GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n")
    uwsgi(base, "a=%d" % i)
PY
    kill -TERM "$pid"
    wait "$pid" || true
}

# A third of the traffic on each: what differs between them is start-up and the pool.
serve django-lazy --chdir examples/djecho djecho.wsgi
serve django-preload --chdir examples/djecho djecho.wsgi --preload --threads 3
serve hello --chdir examples hello --threads 1

# The list: functions that ran in a worker (callgrind counts from zero in a child, since every
# process zeroes its counts as it enters fork), then those that ran only in the zygote
# (Python's start-up: a lazy worker no longer runs it), then those that ran in the master
# after its last fork. The standard library's
# Swift.o keeps most of its code in one 1.6 MB section that no order can split; its functions
# go last in each group, so that section follows the small ones instead of sitting among them.
TOOLCHAIN_LIB=$(dirname "$(dirname "$(readlink -f "$(command -v swiftc)")")")/lib/swift_static/linux
ar p "$TOOLCHAIN_LIB/libswiftCore.a" Swift.o > "$WORK/Swift.o"
"$VENV/bin/python" - "$WORK" "$ROOT/link/apus.order" "$WORK/apus" "$WORK/Swift.o" <<'PY'
import glob, os, re, subprocess, sys
work, dest, binary, stdlib = sys.argv[1:]

def functions(*paths, section=r"\.text"):  # (flags, name) of the functions in `section`
    out = subprocess.run(["objdump", "-t", *paths], capture_output=True, text=True, check=True).stdout
    return re.findall(r"^[0-9a-f]+ (.{7}) " + section + r"\t[0-9a-f]+\s+(?:\.(?:hidden|protected|internal)\s+)?(\S+)$",
                      out, re.M)

defined = {name for _, name in functions(binary)}
# A weak helper that Swift.o shares with our objects (__swift_instantiateConcreteTypeFromMangledName)
# is linked from our object, which comes first: only Swift.o's own functions follow its section.
ours = {name for _, name in functions(*glob.glob(".build/release/*.build/*.o"), section=r"\.text\S*")}
in_blob = {name for flags, name in functions(stdlib) if "w" not in flags or name not in ours}
workers, zygotes, masters = set(), set(), []
for run in sorted(os.listdir(work)):
    # by pid: the master, then its zygote (forked first), then the workers the zygote forked
    dumps = sorted(glob.glob(os.path.join(work, run, "cg.*")), key=lambda p: int(p.rsplit(".", 1)[1]))
    for i, path in enumerate(dumps):
        names = re.findall(r"^fn=(?:\(\d+\) )?(\S+)", open(path, errors="replace").read(), re.M)
        if i == 0:
            masters += names
        elif i == 1:
            zygotes.update(names)
        else:
            workers.update(names)
order, seen = [], set()
for group in (sorted(workers), sorted(zygotes), masters):
    group = [n for n in group if n in defined and n not in seen]
    seen.update(group)
    order += [n for n in group if n not in in_blob] + [n for n in group if n in in_blob]
os.makedirs(os.path.dirname(dest), exist_ok=True)
with open(dest, "w") as f:
    f.write("\n".join(order) + "\n")
print(f"{dest}: {len(order)} functions, {len(workers & seen)} of them run in workers")
PY
# swift build does not know the list is an input of the link: make it link again.
rm -f .build/release/apus
