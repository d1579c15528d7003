import ApusObserve

/// The `apus` module that apps import (and, unless `--no-uwsgi-module`, `uwsgi` when no real
/// one is importable): what Django and Flask projects call on uWSGI. It is made in each
/// process that runs Python, after the interpreter starts and before the app is imported
/// (with `--preload`, in the preloader, so the app sees it at import), and told its worker
/// number after the fork (`enterWorker`): `worker_id()` reads it at call time.
///
/// The reload functions write the same 16-byte record a worker writes for `ready`
/// (`WorkerMessage`: kind, slot, pid, generation, little-endian) to the master's status
/// pipe; the master turns it into the reload a FIFO command asks for.
public struct AppModuleSettings: Sendable {
    /// Write end of the master's status pipe.
    public var statusFD: Int32
    public var masterPID: Int32
    /// `--processes`: uWSGI's `numproc`.
    public var processes: Int
    /// The options as given: (name, value; nil for a flag that is set).
    public var options: [(name: String, value: String?)]
    public var version: String
    /// When the master started (Unix time): uWSGI's `started_on`.
    public var startedOn: Int
    /// Also importable as `uwsgi` (unless a real `uwsgi` module is importable).
    public var aliasUWSGI: Bool
    /// The `WorkerMessage.Kind` values of the reload requests and of a source change.
    public var reloadKind: UInt32
    public var chainReloadKind: UInt32
    public var workersReloadKind: UInt32
    public var sourceChangedKind: UInt32

    public init(statusFD: Int32, masterPID: Int32, processes: Int, options: [(name: String, value: String?)], version: String,
                startedOn: Int, aliasUWSGI: Bool, reloadKind: UInt32, chainReloadKind: UInt32, workersReloadKind: UInt32, sourceChangedKind: UInt32) {
        self.statusFD = statusFD
        self.masterPID = masterPID
        self.processes = processes
        self.options = options
        self.version = version
        self.startedOn = startedOn
        self.aliasUWSGI = aliasUWSGI
        self.reloadKind = reloadKind
        self.chainReloadKind = chainReloadKind
        self.workersReloadKind = workersReloadKind
        self.sourceChangedKind = sourceChangedKind
    }
}

extension PythonInterpreter {
    /// Makes the `apus` module (and the `uwsgi` alias). GIL held. False: the traceback is
    /// printed (the process then serves without the module rather than not at all).
    @discardableResult
    public func installAppModule(_ s: AppModuleSettings) -> Bool {
        guard run(appModuleSource) else { return false }
        guard let names = api.tuple(count: s.options.count), let values = api.tuple(count: s.options.count),
              let kinds = api.tuple(count: 4), let args = api.tuple(count: 10) else {
            api.printError()
            return false
        }
        for (i, option) in s.options.enumerated() {
            api.setTupleItem(names, i, api.string(option.name))
            api.setTupleItem(values, i, api.stringOrNone(option.value))
        }
        for (i, kind) in [s.reloadKind, s.chainReloadKind, s.workersReloadKind, s.sourceChangedKind].enumerated() {
            api.setTupleItem(kinds, i, api.integer(Int(kind)))
        }
        api.setTupleItem(args, 0, api.integer(Int(s.statusFD)))
        api.setTupleItem(args, 1, api.integer(Int(s.masterPID)))
        api.setTupleItem(args, 2, api.integer(s.processes))
        api.setTupleItem(args, 3, PyOwned(retaining: names.borrow))
        api.setTupleItem(args, 4, PyOwned(retaining: values.borrow))
        api.setTupleItem(args, 5, api.string(s.version))
        api.setTupleItem(args, 6, PyOwned(retaining: s.aliasUWSGI ? api.trueObject : api.falseObject))
        api.setTupleItem(args, 7, PyOwned(retaining: kinds.borrow))
        api.setTupleItem(args, 8, api.string(Log.role))
        api.setTupleItem(args, 9, api.integer(s.startedOn))
        guard api.call(helper("install_app_module"), tuple: args) != nil else {
            api.printError()
            return false
        }
        return true
    }

    /// In a worker just forked: its number (`worker_id()`), slot, generation and log name.
    /// GIL held.
    public func enterWorker(number: UInt32, slot: UInt32, generation: UInt32, role: String) {
        guard let args = api.tuple(count: 4) else { return api.printError() }
        api.setTupleItem(args, 0, api.integer(Int(number)))
        api.setTupleItem(args, 1, api.integer(Int(slot)))
        api.setTupleItem(args, 2, api.integer(Int(generation)))
        api.setTupleItem(args, 3, api.string(role))
        if api.call(helper("enter_worker"), tuple: args) == nil { api.printError() }
    }

    /// `--py-autoreload`: starts the thread that watches the app's source files with
    /// inotify and tells the master when one changes. GIL held.
    public func startAutoreload(interval: Double) {
        guard let args = api.tuple(count: 1) else { return api.printError() }
        api.setTupleItem(args, 0, api.integer(max(1, Int(interval))))
        if api.call(helper("start_autoreload"), tuple: args) == nil { api.printError() }
    }
}

let appModuleSource = #"""
_module_state = {"worker": 0, "slot": 0, "generation": 0, "role": "zygote"}


def _log(level, message):
    import time
    stamp = time.strftime("%Y-%m-%d %H:%M:%S +0000", time.gmtime())
    line = "[%s] [%d] [%s] %s: %s\n" % (stamp, os.getpid(), level, _module_state["role"], message)
    os.write(2, line.encode("utf-8", "replace"))


def install_app_module(status_fd, master_pid, processes, names, values, version, alias_uwsgi, kinds, role, started_on):
    import importlib.util
    import socket
    import struct
    import types

    _module_state["role"] = role
    reload_kind, chain_kind, workers_kind, source_kind = kinds
    mod = types.ModuleType("apus", "The Apus server, as the app sees it (uWSGI's uwsgi module, in part).")

    def tell(kind):
        # One write of 16 bytes to a pipe is atomic: the master reads whole records.
        record = struct.pack("<IIiI", kind, _module_state["slot"], os.getpid(), _module_state["generation"])
        os.write(status_fd, record)

    def reload():
        """Graceful reload of every worker (configuration re-read), like the master FIFO's r."""
        tell(reload_kind)
        return True

    def chain_reload():
        """Replace the workers one at a time, like the master FIFO's c."""
        tell(chain_kind)
        return True

    def workers_reload():
        """Start a whole new set of workers, then retire the old one, like the master FIFO's w."""
        tell(workers_kind)
        return True

    def worker_id():
        """This worker's number, 1 to numproc; 0 outside a worker (the preloader)."""
        return _module_state["worker"]

    def masterpid():
        return master_pid

    def log(message):
        """A line in the server's log."""
        _log("INFO", str(message))
        return True

    # uWSGI's opt on Python 3: str keys, bytes values, True for a flag. A repeated option
    # keeps its last value, as uWSGI's does.
    opt = {}
    for name, value in zip(names, values):
        opt[name] = True if value is None else value.encode("utf-8", "surrogateescape")
    # Apus always has a master and Python threads: code that checks these before starting
    # threads (Sentry's SDK does) must not conclude that they are off.
    opt.setdefault("master", True)
    opt.setdefault("enable-threads", True)

    def __getattr__(name):
        raise AttributeError(
            "module %r has no attribute %r: Apus provides worker_id, numproc, masterpid, opt, "
            "reload, chain_reload, workers_reload, log, version, hostname and started_on, not uWSGI's "
            "cache, spooler, signal, mule, lock or RPC functions" % (mod.__name__, name))

    mod.reload = reload
    mod.chain_reload = chain_reload
    mod.workers_reload = workers_reload
    mod.worker_id = worker_id
    mod.masterpid = masterpid
    mod.log = log
    mod.opt = opt
    mod.numproc = processes
    mod.version = version.encode()
    mod.started_on = started_on
    mod.hostname = socket.gethostname().encode("utf-8", "surrogateescape")
    mod.__getattr__ = __getattr__
    mod._tell_source_changed = lambda: tell(source_kind)
    sys.modules["apus"] = mod
    if alias_uwsgi and "uwsgi" not in sys.modules:
        try:
            real = importlib.util.find_spec("uwsgi")
        except (ImportError, ValueError):
            real = None
        if real is None:
            sys.modules["uwsgi"] = mod
            # uwsgidecorators needs uWSGI's signal, spooler and mule functions: importing it
            # fails as it does outside uWSGI (ImportError), so code that guards it with
            # `except ImportError` keeps working instead of failing on a missing function.
            sys.modules.setdefault("uwsgidecorators", None)


def enter_worker(number, slot, generation, role):
    _module_state.update(worker=number, slot=slot, generation=generation, role=role)


def _project_files(excluded):
    files = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not isinstance(path, str) or not os.path.isabs(path):
            continue
        path = os.path.realpath(path)
        if path.startswith(excluded) or "/site-packages/" in path or "/dist-packages/" in path:
            continue
        if os.path.isfile(path):
            files.add(path)
    return files


def start_autoreload(interval):
    import ctypes
    import select
    import struct
    import sysconfig
    import threading

    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        _log("ERROR", "autoreload: inotify_init1: %s" % os.strerror(ctypes.get_errno()))
        return
    # Close-write (saved in place), moved-to (saved by rename: vim, sed -i), attributes
    # (touch), deleted: watched on the directories, so a file replaced by another is seen.
    mask = 0x00000008 | 0x00000080 | 0x00000004 | 0x00000200
    paths = sysconfig.get_paths()
    excluded = tuple(sorted({os.path.realpath(paths[k]) + os.sep for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}))
    tell = sys.modules["apus"]._tell_source_changed
    watched = {}   # watch descriptor -> directory
    files = set()

    def rescan():
        nonlocal files
        files = _project_files(excluded)
        known = set(watched.values())
        for directory in {os.path.dirname(f) for f in files} - known:
            wd = libc.inotify_add_watch(fd, directory.encode(), mask)
            if wd < 0:
                _log("WARNING", "autoreload: cannot watch %s: %s" % (directory, os.strerror(ctypes.get_errno())))
            else:
                watched[wd] = directory

    def changed(data):
        hits = []
        offset = 0
        while offset + 16 <= len(data):
            wd, _, _, length = struct.unpack_from("iIII", data, offset)
            name = data[offset + 16:offset + 16 + length].split(b"\0", 1)[0]
            offset += 16 + length
            directory = watched.get(wd)
            if directory is not None and name:
                path = os.path.join(directory, os.fsdecode(name))
                if path in files:
                    hits.append(path)
        return hits

    def read_all():
        data = b""
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return data
            if not chunk:
                return data
            data += chunk

    def watch():
        modules = len(sys.modules)
        while True:
            ready, _, _ = select.select([fd], [], [], interval)
            if not ready:
                if len(sys.modules) != modules:
                    modules = len(sys.modules)
                    rescan()
                continue
            hits = changed(read_all())
            if not hits:
                continue
            # An editor's save is several events: gather them into one reload.
            while select.select([fd], [], [], 0.1)[0]:
                hits += changed(read_all())
            shown = sorted(set(hits))
            _log("INFO", "autoreload: %s changed: asking the master for a chain reload" % ", ".join(shown))
            tell()

    rescan()
    _log("INFO", "autoreload: watching %d files in %d directories (new modules looked for every %d s)"
         % (len(files), len(watched), interval))
    threading.Thread(target=watch, name="apus-autoreload", daemon=True).start()
"""#
