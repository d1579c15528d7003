"""The deployment examples in examples/ (docker, heroku, kubernetes, systemd), run as their
platform would run them, with the built binary and no container daemon:

- Docker: the Dockerfile's last stage is parsed (COPY from the build context, WORKDIR, ENV,
  CMD, STOPSIGNAL); its files are laid out under a temporary "image root" (absolute paths in
  CMD are moved there), `apus` and `python3` come first on PATH (the test venv's Python
  stands in for the image's), and CMD runs as PID 1 of a new PID namespace
  (`unshare --pid --fork --mount-proc`). PID 1 gets no default signal actions: the master
  must handle TERM/INT/QUIT/HUP itself, and it must reap the orphans of the whole namespace.
- Heroku: the Procfile's web command through bash, with PORT set; SIGTERM to the process
  group as the dyno manager sends it.
- Kubernetes: the Deployment's container args run with the demo app; probe ports, the
  readiness path and the shutdown arithmetic are checked.
- systemd: the service's ExecStart under systemd-socket-activate with the socket unit's
  ListenStream and FileDescriptorName, then ExecReload.
"""
import configparser
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import conftest
from conftest import APUS_BIN, free_port
from helpers import EXAMPLES, REPO, fifo_send, get, wait_log, wait_until

APPS = Path(__file__).resolve().parent / "apps"
ACTIVATE = shutil.which("systemd-socket-activate")
UNSHARE = shutil.which("unshare")
NSENTER = shutil.which("nsenter")


# -- running a command line and watching it ---------------------------------------------------

class Run:
    """A process (group) started from a command line, its log in a file."""

    def __init__(self, argv, *, env, cwd, log_path):
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        conftest.LIVE.append(self)  # failing tests show the log
        self.port = None
        self.app = argv[-1]

    def log(self):
        return self.log_path.read_bytes().decode("utf-8", "replace")

    def wait_ready(self, port, path="/", timeout=30.0):
        self.port = port

        def answered():
            if self.proc.poll() is not None:
                pytest.fail(f"exited with {self.proc.returncode} before serving\n{self.log()}")
            try:
                return get(port, path, timeout=5)
            except (OSError, ValueError):
                return None
        return wait_until(answered, timeout, interval=0.1, what=f"GET {path} on port {port}")

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=20.0):
        if self.proc.poll() is None:
            import helpers
            helpers.stop_process_group(self.proc, timeout)
        self._log.close()
        if self in conftest.LIVE:
            conftest.LIVE.remove(self)
        return self.proc.returncode


@pytest.fixture
def runs():
    made = []
    yield made
    for r in made:
        r.stop()


def tool_path(tmp_path):
    """A bin directory with `apus` (the built binary), then the test venv's bin (python3)."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    link = bindir / "apus"
    if not link.exists():
        link.symlink_to(APUS_BIN)
    return f"{bindir}:{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"


# -- Docker -----------------------------------------------------------------------------------

def dockerfile_instructions(path):
    """[(INSTRUCTION, arguments)] with comments dropped and continuation lines joined."""
    out, pending = [], ""
    for line in path.read_text().splitlines():
        if not pending and line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line:
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage(instructions):
    starts = [i for i, (word, _) in enumerate(instructions) if word == "FROM"]
    return instructions[starts[-1]:]


def image_of(dockerfile):
    """What the last stage sets: env, workdir, cmd, stop signal, files copied from the context."""
    image = {"env": {}, "workdir": "/", "cmd": None, "stopsignal": None, "copies": [], "expose": []}
    for word, rest in final_stage(dockerfile_instructions(dockerfile)):
        if word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                image["env"][key] = value
        elif word == "WORKDIR":
            image["workdir"] = rest
        elif word == "CMD":
            image["cmd"] = json.loads(rest)  # the exec form, or this fails
        elif word == "STOPSIGNAL":
            image["stopsignal"] = rest
        elif word == "EXPOSE":
            image["expose"] += [int(p.split("/")[0]) for p in rest.split()]
        elif word == "COPY" and not rest.startswith("--from"):
            src, dest = shlex.split(rest)
            image["copies"].append((src, dest))
    return image


def lay_out(image, root):
    """The image's files from the build context under `root`."""
    for src, dest in image["copies"]:
        target = root / dest.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / src, target)
    (root / image["workdir"].lstrip("/")).mkdir(parents=True, exist_ok=True)


def moved(arg, root):
    """An absolute path that exists in the laid-out image, moved under `root`."""
    if arg.startswith("/") and (root / arg.lstrip("/")).exists():
        return str(root / arg.lstrip("/"))
    return arg


def ns_pid1(unshare_proc, timeout=10.0):
    """The host pid of the process unshare --fork started: PID 1 of the new namespace."""
    def child():
        try:
            with open(f"/proc/{unshare_proc.pid}/task/{unshare_proc.pid}/children") as f:
                kids = f.read().split()
        except FileNotFoundError:
            return None
        return int(kids[0]) if kids else None
    pid = wait_until(child, timeout, what="unshare's child")
    with open(f"/proc/{pid}/status") as f:
        nspid = next(line for line in f if line.startswith("NSpid:")).split()[1:]
    assert nspid[-1] == "1", f"not PID 1 of its namespace: NSpid {nspid}"
    return pid


def in_namespace(pid1, *argv):
    """Runs argv inside the PID and mount namespaces of `pid1` (its /proc is the namespace's)."""
    return subprocess.run([NSENTER, "--target", str(pid1), "--pid", "--mount", "--", *argv],
                          capture_output=True, text=True, timeout=20)


def namespace_processes(pid1):
    """{pid: (name, state)} of every process in the namespace, read from its own /proc."""
    script = "for f in /proc/[0-9]*/stat; do cat \"$f\" 2>/dev/null; echo; done"
    out = in_namespace(pid1, "sh", "-c", script).stdout
    found = {}
    for line in out.splitlines():
        m = re.match(r"(\d+) \((.*)\) (\S)", line)
        if m:
            found[int(m.group(1))] = (m.group(2), m.group(3))
    return found


def zombies(pid1):
    return {pid: name for pid, (name, state) in namespace_processes(pid1).items() if state == "Z"}


needs_namespaces = pytest.mark.skipif(
    UNSHARE is None or NSENTER is None or os.geteuid() != 0,
    reason="needs unshare and nsenter from util-linux, as root")


def as_pid1(tmp_path, argv, env, cwd, name):
    run = Run([UNSHARE, "--pid", "--fork", "--mount-proc", "--", *argv], env=env, cwd=cwd,
              log_path=tmp_path / f"{name}.log")
    run.pid1 = ns_pid1(run.proc)
    return run


@pytest.fixture
def docker_image():
    return image_of(EXAMPLES / "docker" / "Dockerfile")


def test_dockerfile_is_built_for_pid1(docker_image):
    image = docker_image
    assert image["cmd"][0] == "apus", "CMD in the exec form, apus first: apus is PID 1"
    assert image["stopsignal"] == "SIGTERM"
    assert "PORT" in image["env"] and int(image["env"]["PORT"]) in image["expose"]
    # the shutdown fits in docker stop's default 10 s
    cmd = image["cmd"]
    assert float(cmd[cmd.index("--shutdown-timeout") + 1]) < 10
    # the build stage builds the release binary the runtime stage copies
    text = (EXAMPLES / "docker" / "Dockerfile").read_text()
    assert "swift build -c release" in text and "COPY --from=build" in text


@needs_namespaces
def test_docker_cmd_as_pid1_serves_on_port_and_drains_on_sigterm(tmp_path, runs, docker_image):
    image = docker_image
    root = tmp_path / "image"
    lay_out(image, root)
    port = free_port()
    env = dict(image["env"], PORT=str(port), PATH=tool_path(tmp_path), HOME=str(tmp_path))
    argv = [moved(a, root) for a in image["cmd"]]
    run = as_pid1(tmp_path, argv, env, root / image["workdir"].lstrip("/"), "docker")
    runs.append(run)
    r = run.wait_ready(port)
    assert r.status == 200 and r.body == b"Hello, World!"
    log = run.log()
    assert f"listening on http://0.0.0.0:{port}" in log          # PORT honoured
    assert "2 workers x 4 threads" in log                          # APUS_* from ENV
    assert "(pid 1)" in log
    os.kill(run.pid1, signal.SIGTERM)                              # docker stop, from outside
    assert run.wait(15) == 0, run.log()                            # unshare passes PID 1's status on
    assert "SIGTERM: graceful shutdown" in run.log() and "stopped" in run.log()


ORPHAN_CMD = ["apus", "--http", "127.0.0.1:{port}", "--processes", "2", "--chdir", str(APPS), "orphanapp"]


@needs_namespaces
def test_pid1_reaps_orphans_and_handles_signals_sent_inside_the_namespace(tmp_path, runs):
    port = free_port()
    env = {"PATH": tool_path(tmp_path), "HOME": str(tmp_path)}
    argv = [a.format(port=port) for a in ORPHAN_CMD]
    run = as_pid1(tmp_path, argv, env, tmp_path, "orphans")
    runs.append(run)
    run.wait_ready(port)
    # grandchildren whose parent (a shell run by the app) exits at once: re-parented to
    # the master, which reaps them when they exit
    orphans = {int(get(port, "/orphan?s=0.3").body) for _ in range(6)}
    # and one a `docker exec` leaves: a shell inside the namespace that exits before its child
    out = in_namespace(run.pid1, "sh", "-c", "sleep 0.3 >/dev/null 2>&1 & echo $!").stdout
    orphans.add(int(out))
    # they were re-parented to PID 1 while they ran ...
    running = namespace_processes(run.pid1)
    assert all(running[p][0] == "sleep" for p in orphans if p in running)
    # ... and once they exit nothing of them is left: reaped, not zombies
    wait_until(lambda: not orphans & set(namespace_processes(run.pid1)), 10, interval=0.1,
               what=f"the orphans {sorted(orphans)} to be reaped")
    assert not zombies(run.pid1)
    # signals from inside the namespace reach PID 1 only through a handler: HUP reloads
    offset = len(run.log())
    assert in_namespace(run.pid1, "kill", "-HUP", "1").returncode == 0
    wait_log(run.log, r"generation 2 serving", 30, start=offset)
    assert get(port).status == 200
    assert not zombies(run.pid1)
    assert in_namespace(run.pid1, "kill", "-INT", "1").returncode == 0
    assert run.wait(15) == 0, run.log()
    assert "SIGINT: graceful shutdown" in run.log()


@needs_namespaces
def test_pid1_quits_at_once_on_sigquit(tmp_path, runs):
    port = free_port()
    env = {"PATH": tool_path(tmp_path), "HOME": str(tmp_path)}
    run = as_pid1(tmp_path, [a.format(port=port) for a in ORPHAN_CMD], env, tmp_path, "quit")
    runs.append(run)
    run.wait_ready(port)
    os.kill(run.pid1, signal.SIGQUIT)
    assert run.wait(10) is not None, run.log()
    assert "SIGQUIT: immediate shutdown" in run.log()


# -- Heroku -----------------------------------------------------------------------------------

def procfile_web():
    for line in (EXAMPLES / "heroku" / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line[4:].strip()
    pytest.fail("no web: line in examples/heroku/Procfile")


def test_procfile_web_runs_with_port_and_stops_within_herokus_30_s(tmp_path, runs):
    command = procfile_web()
    words = shlex.split(command)
    assert words[0] == "apus"
    assert float(words[words.index("--shutdown-timeout") + 1]) < 30   # SIGKILL comes at 30 s
    port = free_port()
    env = {"PORT": str(port), "PATH": tool_path(tmp_path), "HOME": str(tmp_path)}
    # Heroku runs the command with bash from the app's root (here: examples/, with hello.py)
    run = Run(["bash", "-c", command], env=env, cwd=EXAMPLES, log_path=tmp_path / "heroku.log")
    runs.append(run)
    assert run.wait_ready(port).body == b"Hello, World!"
    assert f"listening on http://0.0.0.0:{port}" in run.log()
    assert "2 workers x 4 threads" in run.log()                    # WEB_CONCURRENCY unset
    os.killpg(run.proc.pid, signal.SIGTERM)                        # every process of the dyno
    assert run.wait(25) == 0, run.log()


# -- Kubernetes -------------------------------------------------------------------------------

def deployment():
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load((EXAMPLES / "kubernetes" / "deployment.yaml").read_text())


def option(args, name):
    return args[args.index(name) + 1]


def test_kubernetes_shutdown_arithmetic_and_probe_ports():
    spec = deployment()["spec"]["template"]["spec"]
    container = spec["containers"][0]
    args = container["command"] + container["args"]
    assert args[0] == "apus"
    shutdown = float(option(args, "--shutdown-timeout"))
    delay = float(option(args, "--shutdown-delay"))
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
    sleep = float(pre_stop[1]) if pre_stop else 0.0
    assert not pre_stop or pre_stop[0] == "sleep"
    # SIGKILL at the grace period, counted from the start of preStop (then SIGTERM)
    assert spec["terminationGracePeriodSeconds"] > sleep + delay + shutdown
    bind_port = int(option(args, "--http").rsplit(":", 1)[1])
    metrics_port = int(option(args, "--metrics").rsplit(":", 1)[1])
    ports = {p.get("name"): p["containerPort"] for p in container["ports"]}
    assert bind_port in ports.values() and metrics_port in ports.values()
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        check = container[probe]["httpGet"]
        port = check["port"]
        assert (ports[port] if isinstance(port, str) else port) == metrics_port, probe
        assert check["path"] == path, probe
    strategy = deployment()["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0


def test_kubernetes_args_start_and_answer_the_readiness_probe(tmp_path, runs, docker_image):
    container = deployment()["spec"]["template"]["spec"]["containers"][0]
    root = tmp_path / "image"
    lay_out(docker_image, root)   # the Deployment runs the Docker example's image
    port = free_port()
    args = [moved(a, root) for a in container["command"] + container["args"]]
    bind = args.index("--http") + 1
    args[bind] = f"127.0.0.1:{port}"  # the pod's port 8000, here a free one
    metrics_port = free_port()
    args[args.index("--metrics") + 1] = f"127.0.0.1:{metrics_port}"  # and 9100
    env = dict(docker_image["env"], PATH=tool_path(tmp_path), HOME=str(tmp_path))
    env.update({e["name"]: e["value"] for e in container.get("env", [])})
    run = Run(args, env=env, cwd=root, log_path=tmp_path / "k8s.log")
    runs.append(run)
    run.wait_ready(port)
    for probe in ("readinessProbe", "livenessProbe"):
        assert get(metrics_port, container[probe]["httpGet"]["path"]).status == 200, probe
    os.kill(run.proc.pid, signal.SIGTERM)
    ready_path = container["readinessProbe"]["httpGet"]["path"]
    wait_until(lambda: get(metrics_port, ready_path).status == 503, 1, what="not ready after SIGTERM")
    assert get(port, "/").status == 200  # still serving during --shutdown-delay
    wait = float(option(args, "--shutdown-delay")) + float(option(args, "--shutdown-timeout")) + 5
    assert run.wait(wait) == 0, run.log()


# -- systemd ----------------------------------------------------------------------------------

def unit(name):
    parser = configparser.ConfigParser(interpolation=None, strict=False, comment_prefixes=("#", ";"))
    parser.optionxform = str
    parser.read_string((EXAMPLES / "systemd" / name).read_text())
    return parser


@pytest.mark.skipif(ACTIVATE is None, reason="systemd-socket-activate is not installed")
def test_systemd_units_socket_activated_then_reloaded(tmp_path, runs):
    socket_unit, service = unit("apus.socket"), unit("apus.service")
    listen = socket_unit["Socket"]["ListenStream"]
    assert listen.isdigit(), "the example listens on a port"
    name = socket_unit["Socket"]["FileDescriptorName"]
    s = service["Service"]
    assert "apus.socket" in service["Unit"]["Requires"]
    assert s["KillSignal"] == "SIGTERM"
    exec_start = shlex.split(s["ExecStart"])
    assert float(option(exec_start, "--shutdown-timeout")) < float(s["TimeoutStopSec"])
    # the unit's paths, here: the binary, the venv, the app's directory, the runtime directory
    workdir = tmp_path / "srv"
    workdir.mkdir()
    shutil.copy(EXAMPLES / "hello.py", workdir / "hello.py")
    runtime = tmp_path / "run"
    runtime.mkdir()
    places = {s["WorkingDirectory"] + "/venv": sys.prefix, s["WorkingDirectory"]: str(workdir),
              "/run/" + s["RuntimeDirectory"]: str(runtime)}

    def local(arg):
        for unit_path, here in places.items():
            if arg == unit_path or arg.startswith(unit_path + "/"):
                return here + arg[len(unit_path):]
        return arg
    argv = [APUS_BIN] + [local(a) for a in exec_start[1:]]
    port = free_port()
    env = {"PATH": tool_path(tmp_path), "HOME": str(tmp_path)}
    activate = [ACTIVATE, "-l", f"127.0.0.1:{port}", f"--fdname={name}"]
    for key, value in env.items():
        activate += ["-E", f"{key}={value}"]
    run = Run(activate + ["--"] + argv, env=env, cwd=workdir, log_path=tmp_path / "systemd.log")
    runs.append(run)
    assert run.wait_ready(port).body == b"Hello, World!"
    assert "listening on http://fd:3" in run.log()
    # ExecReload, with $MAINPID
    reload = s["ExecReload"].replace("$MAINPID", str(run.proc.pid))
    offset = len(run.log())
    subprocess.run(shlex.split(reload), check=True)
    wait_log(run.log, r"generation 2 serving", 30, start=offset)
    assert get(port).status == 200
    # the FIFO the service comments name
    fifo_send(local(option(exec_start, "--master-fifo")), "c")
    wait_log(run.log, r"generation 3 serving", 30, start=offset)
    os.kill(run.proc.pid, signal.SIGTERM)     # KillMode=mixed: the main process only
    assert run.wait(float(s["TimeoutStopSec"])) == 0, run.log()
