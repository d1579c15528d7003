#if canImport(Glibc)
import Glibc
#endif
import ApusConfig
import ApusObserve
import ApusSys

/// `--uid`/`--gid` carried out. The master drops root once it has done what needs it (the
/// sockets bound, below port 1024 too, unix sockets given to --chown-socket, the log file,
/// pidfile and FIFO opened) and before it forks anything: every zygote and worker is born
/// as the target user and never had root to lose.
extension Master {
    /// Right after `setUp`. False: a line was logged and the master must not start.
    func applyPrivileges() -> Bool {
        switch privileges {
        case .none:
            break
        case let .already(identity):
            Log.info("running as \(identity.described)")
        case let .change(identity):
            if inherited != nil {
                // The upgrade check refuses this; the options changed on disk since then.
                Log.error("\(PrivilegeDrop.change(identity).refusedOnReload ?? ""); running on as uid \(geteuid()), gid \(getegid())")
                break
            }
            giveLogFile(to: identity)
            if let problem = Privilege.become(identity) {
                Log.error(problem)
                return false
            }
            Log.info("dropped privileges: now \(identity.described), no supplementary groups")
        }
        if geteuid() == 0 && config.uid == nil {
            Log.warning("running as root: the app runs as root too; give --uid and --gid to drop privileges after binding")
        }
        return true
    }

    /// The log file (stderr) is made the target user's, as Gunicorn does with its logs, so
    /// that the dropped master can still open it again: on SIGUSR1 and in the image an
    /// upgrade in place starts. The workers write through the descriptor they inherit and
    /// need nothing. A file that cannot be given away is logged and kept as it is.
    private func giveLogFile(to identity: Identity) {
        if let file = config.accessLogFile, file != AccessLogDestination.stdout,
           case let .failed(e) = Sys.call({ chown(file, identity.uid ?? uid_t.max, identity.gid) }) {
            Log.warning("--access-logfile: cannot give \(file) to \(identity.described): \(Sys.describe(e)); the workers may not open it")
        }
        guard let file = config.logFile else { return }  // stderr is not ours to change
        if case let .failed(e) = Sys.call({ fchown(2, identity.uid ?? uid_t.max, identity.gid) }) {
            Log.warning("--log-file: cannot give \(file) to \(identity.described): \(Sys.describe(e)); reopening it after the drop will fail")
        }
    }
}

/// The system calls of a drop, in the only order that works: the supplementary groups and
/// the group while still root, the user last (after it nothing else can be changed).
enum Privilege {
    /// Becomes `identity`, then checks the kernel's view, and that root cannot be taken
    /// back. Nil, or the one line that says what failed.
    static func become(_ identity: Identity) -> String? {
        var groups = [gid_t(identity.gid)]
        if case let .failed(e) = Sys.call({ setgroups(1, &groups) }) {
            return "--gid: cannot drop the supplementary groups: \(Sys.describe(e))"
        }
        if case let .failed(e) = Sys.call({ setgid(identity.gid) }) {
            return "--gid: cannot change to \(identity.described): \(Sys.describe(e))"
        }
        if let uid = identity.uid, case let .failed(e) = Sys.call({ setuid(uid) }) {
            return "--uid: cannot change to \(identity.described): \(Sys.describe(e))"
        }
        let now = Credentials.current()
        let uids = identity.uid.map { u in [now.uid, now.euid, now.suid].allSatisfy { $0 == u } } ?? true
        let gids = [now.gid, now.egid, now.sgid].allSatisfy { $0 == identity.gid }
        guard uids, gids, now.groups.allSatisfy({ $0 == identity.gid }) else {
            return "privileges not dropped as asked: uids \(now.uid)/\(now.euid)/\(now.suid), gids \(now.gid)/\(now.egid)/\(now.sgid), groups \(now.groups)"
        }
        // Without CAP_SETUID, setuid(0) must fail; if it works the drop protects nothing.
        if let uid = identity.uid, uid != 0, setuid(0) == 0 {
            return "--uid: root could be taken back after changing to \(identity.described); not starting"
        }
        return nil
    }
}
