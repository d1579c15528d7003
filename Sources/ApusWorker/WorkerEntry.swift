#if canImport(Glibc)
import Glibc
#endif
import CApusSys
import ApusConfig
import ApusIPC
import ApusObserve
import ApusPython
import ApusSys

/// Entry point for the process that runs Python first: the zygote. The master forks it,
/// then it never returns.
public enum WorkerEntry {
    /// Starts Python and, with `--preload`, imports the app; then forks workers on the
    /// master's request (read from `commandFD`). Without `--preload` each worker imports the
    /// app itself after the fork, as uWSGI's `--lazy-apps` does: the interpreter's start-up
    /// is done once, and its code and tables are never touched by a worker. Each worker is
    /// forked twice over so that it is re-parented to the master (a child subreaper), which
    /// then supervises it like any other child.
    public static func runZygote(_ spec: WorkerLaunch, commandFD: Int32) -> Never {
        becomeChild(of: spec.masterPID, role: spec.role)
        ProcessTitle.set(ProcessTitle.compose(prefix: spec.configuration.processTitlePrefix,
                                              "\(spec.role) gen \(spec.generation)"))
        let interpreter = startPython(spec)
        interpreter.installAppModule(appModuleSettings(spec.configuration, statusFD: spec.statusFD, masterPID: spec.masterPID,
                                                       version: spec.version, startedOn: spec.startedOn))
        let preloaded = spec.configuration.preload ? loadApplication(spec, interpreter) : nil
        let titleStart = Array(ProcessTitle.compose(prefix: spec.configuration.processTitlePrefix, "").utf8)
        WorkerMessage(kind: .zygoteReady, slot: 0, pid: getpid(), generation: spec.generation).send(to: spec.statusFD)
        while let request = SpawnRequest.receive(from: commandFD) {
            let role = "worker \(request.slot)"
            interpreter.beforeFork()
            let child = apus_fork_clean()
            let forkError = errno
            if child == 0 {
                if apus_fork_clean() != 0 { _exit(0) }  // the middle process leaves at once
                interpreter.afterForkChild()
                Sys.close(commandFD)
                var workerSpec = spec
                workerSpec.slot = request.slot
                workerSpec.generation = request.generation
                workerSpec.role = role
                becomeChild(of: spec.masterPID, role: role)
                WorkerTitle.setUp(start: titleStart, number: Int(request.number),
                                  generation: request.generation, threads: spec.configuration.threads)
                WorkerMessage(kind: .started, slot: request.slot, pid: getpid(), generation: request.generation).send(to: spec.statusFD)
                interpreter.enterWorker(number: request.number, slot: request.slot, generation: request.generation, role: role)
                let app = preloaded ?? loadApplication(workerSpec, interpreter)
                // One watcher per generation: one change, one message.
                if spec.configuration.autoreload > 0 && request.number == 1 {
                    interpreter.startAutoreload(interval: spec.configuration.autoreload)
                }
                Worker(spec: workerSpec, number: request.number, interpreter: interpreter, app: app).run()
            }
            interpreter.afterForkParent()
            if child > 0 {
                // ECHILD: an app that set SIGCHLD to SIG_IGN had the kernel collect it.
                var status: Int32 = 0
                if case let .failed(e) = Sys.call({ waitpid(child, &status, 0) }), e != ECHILD {
                    fatalError("waitpid failed: \(Sys.describe(e))")
                }
            } else {
                // The master drops the slot when the worker never says `started`.
                Log.error("cannot fork \(role): \(Sys.describe(forkError))")
            }
        }
        _exit(0)  // the master closed the command pipe
    }

    /// Dies with the master; default signal dispositions; a name in `ps`.
    private static func becomeChild(of master: pid_t, role: String) {
        Log.role = role
        // These fail only for a signal that cannot be handled: a bug, checked.
        for sig in [SIGTERM, SIGINT, SIGHUP, SIGCHLD] { Sys.check("sigaction(SIG_DFL)") { apus_signal_default(sig) } }
        Sys.check("sigaction(SIGPIPE, SIG_IGN)") { apus_signal_ignore(SIGPIPE) }
        // SIGUSR1 (reopen the log files) would end a worker that has not installed its
        // handler yet (it is still importing the app): a log rotation then must not kill it.
        Sys.check("sigaction(SIGUSR1, SIG_IGN)") { apus_signal_ignore(SIGUSR1) }
        // A fatal signal must end the worker so the master replaces it: the Swift runtime's
        // crash reporter would print a backtrace and return from a SIGSEGV sent by kill(2).
        for sig in [SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP] { Sys.check("sigaction(SIG_DFL)") { apus_signal_default(sig) } }
        Sys.check("sigprocmask") { apus_unblock_all_signals() }
        // A worker forked by the zygote is re-parented to the master when the middle process
        // exits: wait for that first, so the death signal is tied to the master.
        var tries = 0
        while getppid() != master && tries < 2000 {
            usleep(500)
            tries += 1
        }
        Sys.check("prctl(PR_SET_PDEATHSIG)") { apus_set_pdeathsig(SIGTERM) }
        if getppid() != master { _exit(WorkerExit.bootError) }  // the master is already gone
        // The kernel keeps 15 bytes. Copied by hand: passing `role` would copy a short
        // String to the heap through the standard library's string code.
        var name: (UInt64, UInt64) = (0, 0)
        withUnsafeMutableBytes(of: &name) { buf in
            var i = 0
            for b in role.utf8 where i < 15 {
                buf[i] = b
                i += 1
            }
            Sys.check("prctl(PR_SET_NAME)") { apus_set_name(buf.baseAddress!.assumingMemoryBound(to: CChar.self)) }
        }
    }

    /// The --env variables, then the interpreter, with the working directory (the app's,
    /// after --chdir) and then --pythonpath first on sys.path.
    private static func startPython(_ spec: WorkerLaunch) -> PythonInterpreter {
        startPython(spec.configuration, spec.python)
    }

    private static func startPython(_ config: Configuration, _ python: PythonInstallation) -> PythonInterpreter {
        for (k, v) in config.env { setenv(k, v, 1) }
        do {
            return try PythonInterpreter.start(libraryPath: python.libraryPath,
                                               programPath: python.programPath,
                                               sysPath: config.pythonPath)
        } catch {
            Log.error("cannot start Python: \(error)")
            _exit(WorkerExit.bootError)
        }
    }

    /// `apus --check`: starts Python and imports the app as a worker would, in this
    /// process, then exits 0; a failure is printed (the traceback for the app) and exits
    /// with the status a worker would (`WorkerExit`).
    public static func check(_ config: Configuration, _ python: PythonInstallation) -> Never {
        Log.role = "check"
        let interpreter = startPython(config, python)
        interpreter.installAppModule(appModuleSettings(config, statusFD: -1, masterPID: 0, version: "", startedOn: Int(time(nil))))
        _ = loadApplication(config, interpreter)
        Log.info("check passed: \(config.app.description) imports with Python \(python.version) (\(python.programPath))")
        exit(0)
    }

    private static func appModuleSettings(_ config: Configuration, statusFD: Int32, masterPID: pid_t, version: String,
                                          startedOn: Int) -> AppModuleSettings {
        AppModuleSettings(statusFD: statusFD, masterPID: masterPID, processes: config.processes,
                          options: config.givenOptions.entries.map { ($0.name, $0.value) }, version: version, startedOn: startedOn,
                          aliasUWSGI: config.uwsgiModule,
                          reloadKind: WorkerMessage.Kind.reloadRequested.rawValue,
                          chainReloadKind: WorkerMessage.Kind.chainReloadRequested.rawValue,
                          workersReloadKind: WorkerMessage.Kind.workersReloadRequested.rawValue,
                          sourceChangedKind: WorkerMessage.Kind.sourceChanged.rawValue)
    }

    private static func loadApplication(_ spec: WorkerLaunch, _ interpreter: PythonInterpreter) -> WSGICallable {
        loadApplication(spec.configuration, interpreter)
    }

    private static func loadApplication(_ config: Configuration, _ interpreter: PythonInterpreter) -> WSGICallable {
        let app = config.app
        do {
            return try interpreter.loadApp(module: app.module, file: app.wsgiFile, callable: app.callable)
        } catch {
            Log.error("\(error)")
            _exit(WorkerExit.appLoadError)
        }
    }
}
