#if canImport(Glibc)
import Glibc
#endif
import CApusSys
import ApusConfig
import ApusObserve
import ApusSys

/// `--attach-daemon`: shell commands the master runs next to the workers (a celery worker, a
/// scheduler), as uWSGI's attach-daemon does: each in its own process group and session, with
/// stdin from /dev/null and the master's log as stdout and stderr, restarted when it exits,
/// throttled when it keeps exiting at once, killed if the master dies. They live across
/// reloads; at shutdown their groups get SIGTERM, then SIGKILL after --reload-mercy.
struct AttachedDaemon {
    let command: String
    var pid: pid_t = 0
    /// Starts so far, and when the last one was.
    var spawns = 0
    var lastSpawn = 0.0
    /// Set at shutdown: not restarted any more.
    var stopped = false

    /// Seconds the next start waits before it runs the command: uWSGI's rule, a command that
    /// ran 3 s or less waits one second more for each start so far, less the time it ran,
    /// at least 1 and at most 300.
    func throttle(now: Double) -> Int {
        guard spawns > 0, now - lastSpawn <= 3 else { return 0 }
        return min(300, max(1, spawns - Int(now - lastSpawn)))
    }
}

extension Master {
    func startDaemons() {
        for i in daemons.indices { spawnDaemon(i) }
    }

    private func spawnDaemon(_ i: Int) {
        let now = Sys.now()
        let wait = daemons[i].throttle(now: now)
        if wait > 0 { Log.warning("attached daemon \"\(daemons[i].command)\" exited soon after it started: starting it again in \(wait) s") }
        // Made before the fork: the child only sets itself up and calls execve.
        let argv = CStrings(["/bin/sh", "-c", daemons[i].command])
        let devNull = strdup("/dev/null")
        defer { free(devNull) }
        let child = apus_fork_clean()
        if child == 0 {
            _ = setsid()
            _ = apus_set_pdeathsig(SIGKILL)
            _ = apus_signal_default(SIGPIPE)
            let fd = devNull.map { open($0, O_RDONLY) } ?? -1
            if fd >= 0 { _ = dup2(fd, 0); if fd != 0 { _ = close(fd) } }
            _ = dup2(2, 1)
            if wait > 0 { _ = sleep(UInt32(wait)) }
            execv("/bin/sh", argv.pointers)
            _exit(127)
        }
        withExtendedLifetime(argv) {}
        guard child > 0 else {
            Log.error("attached daemon \"\(daemons[i].command)\": fork: \(Sys.describe(errno))")
            return
        }
        daemons[i].pid = child
        daemons[i].spawns += 1
        daemons[i].lastSpawn = now
        Log.info("attached daemon \"\(daemons[i].command)\" started (pid \(child))")
    }

    /// A reaped child that was an attached daemon: logged and, unless stopping, started again.
    func daemonExited(pid: pid_t, how: String) -> Bool {
        guard let i = daemons.firstIndex(where: { $0.pid == pid }) else { return false }
        daemons[i].pid = 0
        if stopping || daemons[i].stopped {
            Log.info("attached daemon \"\(daemons[i].command)\" (pid \(pid)) \(how)")
            return true
        }
        Log.warning("attached daemon \"\(daemons[i].command)\" (pid \(pid)) \(how); starting it again")
        spawnDaemon(i)
        return true
    }

    /// At shutdown and before an upgrade in place: SIGTERM to each daemon's process group.
    func stopDaemons(deadline: Double) {
        daemonDeadline = deadline
        for i in daemons.indices {
            daemons[i].stopped = true
            if daemons[i].pid > 0 {
                Log.info("stopping attached daemon \"\(daemons[i].command)\" (pid \(daemons[i].pid))")
                signalGroup(SIGTERM, of: daemons[i].pid)
            }
        }
    }

    /// Daemons still running past their deadline get SIGKILL (their whole group).
    func enforceDaemonDeadline(_ t: Double) {
        guard let deadline = daemonDeadline, t >= deadline else { return }
        for d in daemons where d.pid > 0 {
            Log.warning("attached daemon \"\(d.command)\" (pid \(d.pid)) still running: killing it")
            signalGroup(SIGKILL, of: d.pid)
        }
        daemonDeadline = nil
    }

    var daemonsRunning: Bool { daemons.contains { $0.pid > 0 } }

    /// An upgrade in place: the new image starts the daemons again; the old ones get SIGTERM
    /// (the new image reaps them). If the upgrade fails they are restarted as after any exit.
    func handOffDaemons() {
        for d in daemons where d.pid > 0 { signalGroup(SIGTERM, of: d.pid) }
    }

    /// A daemon leads its own process group (setsid): its children get the signal too.
    private func signalGroup(_ sig: Int32, of pid: pid_t) {
        guard pid > 1 else { return }
        switch Sys.killGroup(pid, sig) {
        case .done, .wouldBlock, .failed(ESRCH): break
        case let .failed(e): Log.warning("cannot signal process group \(pid): \(Sys.describe(e))")
        }
    }
}

/// `--log-maxsize`: the master renames a log file that reached the size to FILE.SECONDS (as
/// uWSGI names it) and reopens FILE; the workers reopen it on SIGUSR1, as after logrotate.
extension Master {
    func rotateLogIfFull(_ t: Double) {
        guard config.logMaxSize > 0, let file = config.logFile, t - logCheckedAt >= 1 else { return }
        logCheckedAt = t
        var st = stat()
        guard fstat(2, &st) == 0, Int(st.st_size) >= config.logMaxSize else { return }
        let rotated = "\(file).\(time(nil))"
        Log.info("log file reached \(Int(st.st_size)) bytes (--log-maxsize \(config.logMaxSize)): renaming it to \(rotated)")
        if case let .failed(e) = Sys.call({ rename(file, rotated) }) {
            // Once, not every second: after --uid the directory may not be writable any more.
            Log.error("--log-maxsize: cannot rename \(file): \(Sys.describe(e)); the log is not rotated any more")
            logCheckedAt = .infinity
            return
        }
        if let e = LogFile.reopen(file) { Log.error("--log-maxsize: cannot reopen \(file): \(Sys.describe(e))"); return }
        for pid in table.pids { deliver(SIGUSR1, to: pid) }
    }
}
