#!/usr/bin/env bash
# Builds the release binary (swift build -c release) and packs it into a wheel in dist/:
# `pip install dist/apus-*.whl` puts the `apus` command into the venv's bin/. Prints the
# wheel's path as the last line of stdout (everything else goes to stderr).
#
# The wheel holds one file besides its metadata: the binary, stripped, as
# apus-VERSION.data/scripts/apus, which pip copies as it is into bin/. The binary loads
# libpython with dlopen at run time, so one wheel serves every CPython from 3.9 on
# (tag py3-none); it needs only the system libraries checked below, and the glibc symbol
# versions it imports decide the manylinux_2_XX tag. Zip entries carry a fixed time
# (SOURCE_DATE_EPOCH, else the last commit's), so the same binary gives the same wheel.
# Needs python3 (standard library only) and, to strip, strip or llvm-strip. See
# docs/deploying.md ("The wheel").
set -euo pipefail
cd "$(dirname "$0")/.."

swift build -c release >&2
BIN="$(swift build -c release --show-bin-path)/apus"
EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 315532800)}

python3 - "$BIN" dist "$EPOCH" <<'PY'
import base64, hashlib, os, shutil, struct, subprocess, sys, tempfile, time, zipfile

binary, outdir, epoch = sys.argv[1], sys.argv[2], int(sys.argv[3])

def say(*a):
    print(*a, file=sys.stderr)

def elf_dependencies(path):
    """(machine, DT_NEEDED names, {library: {version names}}) from an ELF64 little-endian file."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        sys.exit(f"wheel.sh: {path} is not a 64-bit little-endian ELF file")
    machine, = struct.unpack_from("<H", data, 18)
    shoff, = struct.unpack_from("<Q", data, 40)
    shentsize, shnum = struct.unpack_from("<HH", data, 58)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]

    def string(table, offset):
        start = sections[table][4] + offset
        return data[start:data.index(b"\0", start)].decode()

    needed, versions = [], {}
    for (_, kind, _, _, off, size, link, info, _, _) in sections:
        if kind == 6:  # SHT_DYNAMIC: DT_NEEDED entries
            for i in range(0, size, 16):
                tag, value = struct.unpack_from("<qQ", data, off + i)
                if tag == 0:
                    break
                if tag == 1:
                    needed.append(string(link, value))
        elif kind == 0x6ffffffe:  # SHT_GNU_verneed: the symbol versions wanted from each library
            at = off
            for _ in range(info):
                _, count, file, aux, nxt = struct.unpack_from("<HHIII", data, at)
                names = versions.setdefault(string(link, file), set())
                a = at + aux
                for _ in range(count):
                    _, _, _, name, anext = struct.unpack_from("<IHHII", data, a)
                    names.add(string(link, name))
                    a += anext
                at += nxt
    return machine, needed, versions

def highest(names, prefix):
    found = [tuple(int(p) for p in n[len(prefix):].split(".")) for n in names
             if n.startswith(prefix) and all(p.isdigit() for p in n[len(prefix):].split("."))]
    return max(found) if found else None

machine, needed, versions = elf_dependencies(binary)
arch = {62: "x86_64", 183: "aarch64"}.get(machine)
if arch is None:
    sys.exit(f"wheel.sh: unknown ELF machine {machine}")
# What a manylinux wheel may load from the system (PEP 600: glibc and a few libraries every
# distribution has). The Swift runtime must be in the binary (Package.swift: -static-stdlib).
allowed = {"libc.so.6", "libm.so.6", "libdl.so.2", "librt.so.1", "libpthread.so.0", "libutil.so.1",
           "libgcc_s.so.1", "libstdc++.so.6", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1"}
strangers = [n for n in needed if n not in allowed]
if strangers:
    sys.exit(f"wheel.sh: {binary} needs {', '.join(strangers)}; a wheel can rely only on {', '.join(sorted(allowed))}")
every = set().union(*versions.values()) if versions else set()
glibc = highest(every, "GLIBC_")
if glibc is None or glibc[0] != 2:
    sys.exit(f"wheel.sh: cannot tell which glibc {binary} needs")
tag = f"py3-none-manylinux_{glibc[0]}_{glibc[1]}_{arch}"
say(f"wheel.sh: {binary} needs {', '.join(needed)}")
for prefix in ("GLIBC_", "GLIBCXX_", "CXXABI_", "GCC_"):
    v = highest(every, prefix)
    if v:
        say(f"wheel.sh:   highest {prefix}{'.'.join(map(str, v))}")

answer = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout.split()
if len(answer) != 2 or answer[0] != "apus":
    sys.exit(f"wheel.sh: unexpected `apus --version`: {' '.join(answer)}")
version = answer[1]

scratch = tempfile.mkdtemp(prefix="apus-wheel-")
try:
    stripped = os.path.join(scratch, "apus")
    tool = shutil.which("strip") or shutil.which("llvm-strip")
    if tool:
        # Only the static symbol table and debug sections go: the dynamic symbols stay and
        # nothing in Apus looks up its own symbols.
        subprocess.run([tool, "-o", stripped, binary], check=True)
        say(f"wheel.sh: {os.path.getsize(binary)} bytes, {os.path.getsize(stripped)} stripped ({tool})")
    else:
        shutil.copyfile(binary, stripped)
        say("wheel.sh: no strip or llvm-strip: the binary goes in unstripped")
    with open(stripped, "rb") as f:
        payload = f.read()
finally:
    shutil.rmtree(scratch)

dist_info = f"apus-{version}.dist-info"
metadata = f"""Metadata-Version: 2.1
Name: apus
Version: {version}
Summary: A WSGI application server for Python (Django, Flask, any WSGI callable), written in Swift
Requires-Python: >=3.9
Classifier: Programming Language :: Python :: 3
Classifier: Operating System :: POSIX :: Linux
Classifier: Topic :: Internet :: WWW/HTTP :: WSGI :: Server
Description-Content-Type: text/markdown

Apus serves WSGI applications: a master process owns the sockets and supervises prefork
workers that embed CPython. This wheel installs the `apus` command; started from a venv's
`bin/`, it serves with that venv's Python (3.9 or newer, with a shared libpython).

    pip install apus
    apus --http :8000 --processes 4 --threads 4 mysite.wsgi
"""
wheel = f"""Wheel-Version: 1.0
Generator: apus scripts/wheel.sh
Root-Is-Purelib: false
Tag: {tag}
"""
files = [
    (f"apus-{version}.data/scripts/apus", payload, 0o755),
    (f"{dist_info}/METADATA", metadata.encode(), 0o644),
    (f"{dist_info}/WHEEL", wheel.encode(), 0o644),
]

def record_line(name, content):
    digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(content)}\n"

record = "".join(record_line(n, c) for n, c, _ in files) + f"{dist_info}/RECORD,,\n"
files.append((f"{dist_info}/RECORD", record.encode(), 0o644))

os.makedirs(outdir, exist_ok=True)
path = os.path.join(outdir, f"apus-{version}-{tag}.whl")
stamp = time.gmtime(max(epoch, 315532800))[:6]  # zip times start in 1980
partial = path + ".partial"
with zipfile.ZipFile(partial, "w") as z:
    for name, content, mode in files:
        entry = zipfile.ZipInfo(name, date_time=stamp)
        entry.compress_type = zipfile.ZIP_DEFLATED
        entry.create_system = 3  # unix, so the mode below is read
        entry.external_attr = (0o100000 | mode) << 16
        z.writestr(entry, content, compresslevel=9)
os.replace(partial, path)
say(f"wheel.sh: {os.path.getsize(path)} bytes")
print(os.path.abspath(path))
PY
