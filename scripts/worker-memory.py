"""Memory of a worker for several apus binaries side by side, in one run.

For every (app, mode, shape) cell and every binary, round-robin over the repeats (the order
of the binaries rotates from one repeat to the next): start apus on the bench app as
bench/run.py does, load it with wrk for --load seconds (every worker then has served
requests), and read from /proc the RSS (VmRSS) and PSS (smaps_rollup) of each worker, and the
RSS and PSS of the apus binary's own mappings in it. The master and the zygote (or the
preloader) are not workers; the JSON also has the whole tree's PSS.

    bench/.venv/bin/python scripts/worker-memory.py --bin new=.build/release/apus \\
        --bin old=../old/.build/release/apus [--apps hello,django] [--modes lazy,preload] \\
        [--shapes 2x1,3x3] [--repeats 3] [--load 2] [--json OUT.json]

Prints one Markdown table per figure: medians in KiB, min..max of the repeats, and the
difference from the first binary. Stdlib only; needs wrk (bench/setup.sh installs it).
"""
import argparse
import json
import os
import statistics
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bench"))
import run as bench  # noqa: E402  (bench/run.py: the servers' command lines, /proc readers)


def binary_mappings(pid: int, binary: str) -> dict:
    """{"r-xp Rss": KiB, "r-xp Pss": KiB, ...} over the mappings of `binary` in `pid`."""
    out, perms = {}, None
    real = os.path.realpath(binary)
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            fs = line.split()
            if "-" in fs[0] and len(fs) >= 5 and ":" in fs[3]:
                perms = fs[1] if len(fs) >= 6 and os.path.realpath(fs[5]) == real else None
            elif perms and fs[0] in ("Rss:", "Pss:"):
                key = f"{perms} {fs[0][:-1]}"
                out[key] = out.get(key, 0) + int(fs[1])
    return out


def measure(args, binary: str, app: str, shape: tuple, mode: str) -> dict:
    workers, threads = shape
    tmp = tempfile.mkdtemp(prefix="apus-mem-")
    ctx = bench.Ctx(args.venv, binary, bench.free_port(), workers, threads, bench.APPS[app], tmp)
    server = bench.Server("apus", bench._apus_preload if mode == "preload" else bench._apus)
    srv = bench.Running(server, ctx, bench.server_env(args.venv))
    try:
        why = srv.wait_ready(60)
        if why:
            raise RuntimeError(why)
        load = argparse.Namespace(wrk=args.wrk, wrk_threads=2, connections=32)
        bench.run_wrk(load, ctx.port, ctx.app.path, args.load)
        mem = bench.memory(srv.proc.pid)
        ws = [p for p in mem["procs"] if not p["leader"] and not p["helper"] and p["rss_kib"]]
        if len(ws) != workers:
            raise RuntimeError(f"{len(ws)} workers, expected {workers}")
        maps = [binary_mappings(p["pid"], binary) for p in ws]
        keys = sorted(set().union(*maps))

        def per_worker(f):
            return statistics.mean(f(p, m) for p, m in zip(ws, maps))

        return {"rss": per_worker(lambda p, m: p["rss_kib"]),
                "pss": per_worker(lambda p, m: p["pss_kib"]),
                "bin_rss": per_worker(lambda p, m: sum(v for k, v in m.items() if k.endswith("Rss"))),
                "bin_pss": per_worker(lambda p, m: sum(v for k, v in m.items() if k.endswith("Pss"))),
                "code_rss": per_worker(lambda p, m: m.get("r-xp Rss", 0)),
                "bin_mappings": {k: per_worker(lambda p, m: m.get(k, 0)) for k in keys},
                "total_pss": mem["total_pss_mib"] * 1024}
    finally:
        srv.stop(10)
        shutil.rmtree(tmp, ignore_errors=True)


FIGURES = [("rss", "RSS per worker"), ("pss", "PSS per worker"),
           ("bin_rss", "the binary's mappings: RSS per worker"),
           ("bin_pss", "the binary's mappings: PSS per worker"),
           ("code_rss", "the binary's code (r-xp): RSS per worker")]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", action="append", required=True, metavar="NAME=PATH")
    p.add_argument("--venv", default=os.path.join(REPO, "bench", ".venv"))
    p.add_argument("--apps", default="hello,django")
    p.add_argument("--modes", default="lazy,preload")
    p.add_argument("--shapes", default="2x1,3x3")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--load", type=float, default=2.0, help="seconds of wrk before reading memory")
    p.add_argument("--wrk", default="wrk")
    p.add_argument("--json")
    a = p.parse_args()
    bins = [b.split("=", 1) for b in a.bin]
    for name, path in bins:
        if not os.access(path, os.X_OK):
            p.error(f"{name}: no binary at {path}")
    cells = [(app, bench.parse_shape(s), m) for app in a.apps.split(",")
             for s in a.shapes.split(",") for m in a.modes.split(",")]
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    load0 = os.getloadavg()[0]
    recs = []
    for r in range(a.repeats):
        for app, shape, mode in cells:
            k = r % len(bins)
            for name, path in bins[k:] + bins[:k]:
                rec = {"bin": name, "path": path, "app": app, "mode": mode,
                       "shape": f"{shape[0]}x{shape[1]}", "repeat": r}
                rec.update(measure(a, path, app, shape, mode))
                recs.append(rec)
                bench.log(f"[{r + 1}/{a.repeats}] {app} {mode} {rec['shape']} {name}: "
                          f"RSS {rec['rss']:,.0f} PSS {rec['pss']:,.0f} KiB")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(recs, f, indent=1)
    names = [n for n, _ in bins]
    print(f"{started}, {a.repeats} repeats, load average {load0:.2f} at the start and "
          f"{os.getloadavg()[0]:.2f} at the end. KiB, median (min..max); +/-: the median's "
          f"difference from {names[0]}.")
    for key, title in FIGURES:
        print(f"\n{title}\n")
        print("| app | mode | shape | " + " | ".join(names) + " |")
        print("|---|---|---|" + "---|" * len(names))
        for app, shape, mode in cells:
            s = f"{shape[0]}x{shape[1]}"
            row, first = [], None
            for n in names:
                v = [x[key] for x in recs if (x["bin"], x["app"], x["mode"], x["shape"]) == (n, app, mode, s)]
                m = statistics.median(v)
                first = m if first is None else first
                row.append(f"{m:,.0f} ({min(v):,.0f}..{max(v):,.0f})"
                           + (f" {m - first:+,.0f}" if n != names[0] else ""))
            print(f"| {app} | {mode} | {s} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
