#if canImport(Glibc)
import Glibc
#endif
import CApusSys
import ApusConfig
import ApusIPC
import ApusObserve
import ApusSys

/// How the master starts itself again: the binary on disk (the path it was started by,
/// so a deploy that replaced that file or moved a symlink is followed), the arguments it
/// was given and the directory it was started in.
public struct Relaunch: Sendable {
    public let executable: String
    public let arguments: [String]
    public let startDirectory: String
    /// Variables the next image gets on top of the environment (systemd's LISTEN_*, which
    /// this image took out of its own), and the descriptors they name.
    public let environment: [String]
    public let descriptors: [Int32]

    public init(executable: String, arguments: [String], startDirectory: String,
                environment: [String] = [], descriptors: [Int32] = []) {
        self.executable = executable
        self.arguments = arguments
        self.startDirectory = startDirectory
        self.environment = environment
        self.descriptors = descriptors
    }
}

/// Where an upgrade in place stands.
enum UpgradeStep: Equatable {
    case idle
    /// Asked for while a reload runs: the check starts when it is done.
    case wanted(reason: String)
    /// `apus --check` of the new setup runs as this child.
    case checking(pid: pid_t, since: Double)
    /// The check passed while a reload ran: the exec waits for it to finish.
    case passed
}

/// Upgrade in place (SIGUSR2, FIFO `f`): check the new setup in a child, then execve the
/// binary on disk keeping the PID, the listening sockets, the status pipe, the FIFO, the
/// connection tally and the table of live workers. The new image adopts the old generation
/// and starts the next one as an `upgrade` reload (MasterGenerations.swift): the old
/// workers drain once the new ones are ready, and keep serving if they never are.
extension Master {
    func requestUpgrade(reason: String) {
        if stopping { return }
        guard upgrade == .idle else {
            Log.info("\(reason): an upgrade in place is already under way")
            return
        }
        if plan.isReloading {
            Log.info("\(reason): upgrade in place queued behind the reload in progress")
            upgrade = .wanted(reason: reason)
            return
        }
        startUpgradeCheck(reason: reason)
    }

    /// Runs `BINARY --check ARGS` from the start directory with the environment as it is.
    private func startUpgradeCheck(reason: String) {
        Log.info("\(reason): upgrade in place: checking \(relaunch.executable) with the current options")
        let argv = [relaunch.executable, "--check"] + relaunch.arguments
        let env = currentEnvironment().filter { !$0.hasPrefix(UpgradeState.formatKey + "=") }
            + ["\(UpgradeState.formatKey)=\(UpgradeState.format)"]
        let directory = relaunch.startDirectory
        // Made before the fork: the child only calls chdir and execve.
        let cArgv = CStrings(argv), cEnv = CStrings(env)
        let child = apus_fork_clean()
        if child == 0 {
            _ = chdir(directory)
            execve(relaunch.executable, cArgv.pointers, cEnv.pointers)
            let e = errno
            Sys.writeStderr("apus: cannot run \(relaunch.executable): \(Sys.describe(e))\n")
            _exit(127)
        }
        let forkError = errno
        withExtendedLifetime((cArgv, cEnv)) {}
        guard child > 0 else {
            Log.error("upgrade in place: cannot fork the check: \(Sys.describe(forkError)); generation \(plan.serving) keeps serving")
            return
        }
        upgrade = .checking(pid: child, since: Sys.now())
    }

    /// The check child exited: on success, re-execute (now, or after the reload running).
    /// True when `pid` was the check.
    func upgradeCheckExited(pid: pid_t, exitCode: Int32, how: String) -> Bool {
        guard case let .checking(checkPID, _) = upgrade, checkPID == pid else { return false }
        guard exitCode == 0 else {
            upgrade = .idle
            Log.error("upgrade in place: the check of the new setup failed (\(how)); generation \(plan.serving) keeps serving")
            return true
        }
        upgrade = .passed
        carryOnUpgrade()
        return true
    }

    /// Every turn of the loop: start a queued check, time a hung one out, or exec once the
    /// reload that delayed a passed check is done.
    func carryOnUpgrade() {
        if stopping {
            if case let .checking(pid, _) = upgrade { deliver(SIGKILL, to: pid) }
            upgrade = .idle
            return
        }
        switch upgrade {
        case .idle: break
        case let .wanted(reason):
            if !plan.isReloading { upgrade = .idle; startUpgradeCheck(reason: reason) }
        case let .checking(pid, since):
            if Sys.now() - since > config.reloadTimeout {
                Log.error("upgrade in place: the check did not finish within \(config.reloadTimeout) s; generation \(plan.serving) keeps serving")
                deliver(SIGKILL, to: pid)
                upgrade = .idle  // its exit is reaped as an unknown child
            }
        case .passed:
            if !plan.isReloading { reexecute() }
        }
    }

    /// Hands everything over to the binary on disk. Returns only when execve failed; then
    /// nothing changed.
    private func reexecute() {
        upgrade = .idle
        var state = UpgradeState(startDirectory: relaunch.startDirectory, serving: plan.serving,
                                 statusRead: status.readFD, statusWrite: status.writeFD, tallyFD: tally.fd)
        if let fifo { (state.fifoFD, state.fifoPath) = (fifo.fd, fifo.path) }
        for (bind, fd) in sockets where fd >= 0 {
            var path: String?
            if case let .unix(p) = bind.address { path = p }
            state.sockets.append(.init(fd: fd, bind: bind.description, unixPath: path))
        }
        state.workers = table.upgradeRecords
        let text = Array(state.encoded().utf8)
        let stateFD = apus_memfd("apus-upgrade", 0)
        guard stateFD >= 0, writeAll(stateFD, text), lseek(stateFD, 0, SEEK_SET) == 0 else {
            Log.error("upgrade in place: cannot write the state for the new image: \(Sys.describe(errno)); generation \(plan.serving) keeps serving")
            if stateFD >= 0 { Sys.close(stateFD) }
            return
        }
        let kept = state.descriptors + relaunch.descriptors + [stateFD]
        let replaced = relaunch.environment.compactMap { $0.split(separator: "=", maxSplits: 1).first.map { $0 + "=" } }
            + [UpgradeState.environmentKey + "="]
        let env = currentEnvironment().filter { entry in !replaced.contains { entry.hasPrefix($0) } }
            + relaunch.environment + ["\(UpgradeState.environmentKey)=\(stateFD)"]
        let cArgv = CStrings([relaunch.executable] + relaunch.arguments), cEnv = CStrings(env)
        Log.info("upgrade in place: the check passed; executing \(relaunch.executable) (pid \(getpid()) stays, \(state.workers.count) workers of generation \(plan.serving) adopted)")
        for fd in kept { _ = apus_set_cloexec(fd, 0) }
        handOffDaemons()
        // Signals wait, pending, until the new image has its handlers (SignalQueue.install).
        _ = apus_block_all_signals()
        if chdir(relaunch.startDirectory) == 0 {
            execve(relaunch.executable, cArgv.pointers, cEnv.pointers)
        }
        let e = errno
        _ = apus_unblock_all_signals()
        for fd in kept { _ = apus_set_cloexec(fd, 1) }
        Sys.close(stateFD)
        if let dir = config.chdir { _ = chdir(dir) }
        withExtendedLifetime((cArgv, cEnv)) {}
        Log.error("upgrade in place: cannot execute \(relaunch.executable): \(Sys.describe(e)); generation \(plan.serving) keeps serving")
    }

    /// The new image's first step: the old image's workers are this image's, in the old
    /// generation, which the `upgrade` reload replaces.
    func adopt(_ state: UpgradeState) {
        let g = state.serving
        generations = [g: Generation(g, config: config, python: serving.python, kind: nil)]
        plan = ReloadPlan(serving: g)
        let adopted = state.workers.filter { $0.generation == g && !$0.retiring }.count
        let desired = config.cheaper > 0 ? min(max(config.cheaper, adopted), config.processes) : config.processes
        table = WorkerTable(desired: desired, adopting: state.workers)
        tally.slots = max(tally.slots, Int(table.workers.map(\.slot).max() ?? 0) + 1)
        Log.info("upgrade in place: adopted \(table.workers.count) workers of generation \(g)")
    }

    private func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var done = 0
        while done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            done += n
        }
        return true
    }

    private func currentEnvironment() -> [String] {
        var out: [String] = []
        var p = environ
        while let entry = p.pointee {
            out.append(String(cString: entry))
            p += 1
        }
        return out
    }
}

/// NUL-terminated copies of strings with a NULL-terminated pointer array, for execve, made
/// before a fork so the child allocates nothing.
final class CStrings {
    let pointers: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
    private let count: Int

    init(_ strings: [String]) {
        count = strings.count
        pointers = .allocate(capacity: count + 1)
        for (i, s) in strings.enumerated() { pointers[i] = strdup(s) }
        pointers[count] = nil
    }

    deinit {
        for i in 0..<count { free(pointers[i]) }
        pointers.deallocate()
    }
}
