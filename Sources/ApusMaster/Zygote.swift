#if canImport(Glibc)
import Glibc
#endif
import CApusSys
import ApusIPC
import ApusSys

/// One generation's zygote: the process, with Python started (and with --preload the app
/// imported), that forks the generation's workers on the master's request. The master
/// holds the write end of its command pipe; closing it tells the zygote to exit.
///
/// A class: it stands for one process and one pipe, which the master's generations and
/// its loop refer to, never copies of them.
final class Zygote {
    let generation: UInt32
    /// "preloader" when it imports the app (--preload), else "zygote".
    let name: String
    private(set) var pid: pid_t = 0
    /// It said `zygoteReady`: it can fork workers.
    private(set) var isReady = false
    /// Write end of its command pipe (-1 when it has none).
    private(set) var commandFD: Int32 = -1
    /// Workers asked for before it was ready.
    private(set) var pendingSpawns = 0

    init(generation: UInt32, preload: Bool) {
        self.generation = generation
        name = preload ? "preloader" : "zygote"
    }

    var isRunning: Bool { pid > 0 }

    /// Forks the zygote. `run` is what the child runs, made before the fork from `launch`
    /// and the read end of the command pipe (see "Memory of a worker" in
    /// docs/architecture.md); `inChild` closes the master's own descriptors in the child,
    /// keeping the ones listed. Returns nil, or why it could not be started.
    func start(_ launch: WorkerLaunch, prepare: (WorkerLaunch, Int32) -> () -> Never,
               inChild: ([Int32]) -> Void) -> String? {
        var fds: [Int32] = [0, 0]
        if case let .failed(e) = Sys.call({ apus_pipe_cloexec(&fds, 0) }) {
            return "cannot make the \(name)'s command pipe: \(Sys.describe(e))"
        }
        let keep = launch.listeners.map { $0.fd } + [fds[0]]
        let run = prepare(launch, fds[0])
        let child = apus_fork_clean()
        if child == 0 {
            Sys.close(fds[1])
            inChild(keep)
            run()
        }
        let forkError = errno
        // Keeps what was made for the child before the fork: the optimizer may otherwise
        // sink it into the child, which would then run that code itself.
        withExtendedLifetime((run, keep)) {}
        Sys.close(fds[0])
        if child < 0 {
            Sys.close(fds[1])
            return "cannot fork the \(name) of generation \(generation): \(Sys.describe(forkError))"
        }
        pid = child
        isReady = false
        commandFD = fds[1]
        return nil
    }

    /// It said `zygoteReady`. Returns the workers asked for meanwhile, to be spawned now.
    func becameReady() -> Int {
        isReady = true
        let pending = pendingSpawns
        pendingSpawns = 0
        return pending
    }

    /// Workers asked for before it is ready: spawned when it is.
    func deferSpawns(_ count: Int) {
        pendingSpawns += count
    }

    /// Asks it to fork the worker for `slot`, numbered `number` in its generation. False if it has no command pipe or the
    /// request could not be written (it is exiting: its exit is reaped and handled).
    func requestWorker(slot: UInt32, number: UInt32) -> Bool {
        guard commandFD >= 0 else { return false }
        return SpawnRequest(slot: slot, generation: generation, number: number).send(to: commandFD)
    }

    /// Closes the command pipe, on which it exits, and tells it to stop (SIGTERM). Its
    /// exit is reaped like any other child's.
    func stop(signal: (pid_t, Int32) -> Void) {
        closePipe()
        pendingSpawns = 0
        if pid > 0 { signal(pid, SIGTERM) }
    }

    /// It exited (reaped by the master).
    func exited() {
        closePipe()
        pid = 0
    }

    private func closePipe() {
        Sys.close(commandFD)
        commandFD = -1
        isReady = false
    }
}
