#if canImport(Glibc)
import Glibc
#endif
import CApusSys
import ApusConfig
import ApusIPC
import ApusObserve
import ApusSys

/// The master's children: starting zygotes, asking them for workers, retiring, cutting and
/// reaping. The decisions are the `WorkerTable`'s and the `ReloadPlan`'s; this carries them
/// out with system calls.
extension Master {
    /// Keeps the serving generation at strength: replaces dead workers (after the back-off
    /// when boots keep failing) and retires extra ones after SIGTTOU. Idle during a reload.
    func keepStrength(now t: Double) {
        table.dropStillborn(now: t)
        guard !plan.isReloading, !stopping, let gen = generations[plan.serving] else { return }
        let steps = table.keepStrength(generation: plan.serving, zygoteRunning: gen.zygote.isRunning,
                                       pendingSpawns: gen.zygote.pendingSpawns, now: t)
        for step in steps {
            switch step {
            case let .retire(worker): retire(worker)
            case .startZygote: startZygote(of: plan.serving)  // it died (or could not be forked)
            case let .spawn(count): spawnWorkers(generation: plan.serving, count: count)
            }
        }
    }

    /// Asks generation `g`'s zygote for `count` workers, or queues them until it is ready.
    func spawnWorkers(generation g: UInt32, count: Int) {
        guard let zygote = generations[g]?.zygote else { return }
        guard zygote.isReady else {
            zygote.deferSpawns(count)
            return
        }
        for _ in 0..<count {
            let slot = table.freeSlot()
            let number = table.freeNumber(generation: g)
            tally.slots = max(tally.slots, Int(slot) + 1)
            // The pid arrives with the worker's `started` message.
            if zygote.requestWorker(slot: slot, number: number) {
                table.add(slot: slot, generation: g, now: Sys.now(), number: number)
            }
        }
    }

    func startZygote(of g: UInt32) {
        guard let gen = generations[g] else { return }
        let listeners = gen.config.binds.compactMap { bind in sockets[bind].map { BoundSocket(fd: $0, bind: bind) } }
        var launch = WorkerLaunch(role: gen.zygote.name, slot: 0, generation: g, configuration: gen.config, python: gen.python,
                                  statusFD: status.writeFD, masterPID: getpid(), listeners: listeners, tally: tally)
        launch.version = version
        launch.startedOn = startedOn
        let started = Umask.with(gen.config.umask) { gen.zygote.start(launch, prepare: prepareZygote, inChild: closeMasterOnlyFDs) }
        guard let problem = started else { return }
        if g == plan.incoming {
            perform(plan.failed(generation: g, reason: problem, workers: workerCount(for: plan.pending)))
        } else {
            Log.error("\(problem); retrying in 1 s")
            table.delaySpawns(until: Sys.now() + 1)
        }
    }

    func stopZygote(of g: UInt32) {
        generations[g]?.zygote.stop { deliver($1, to: $0) }
    }

    /// In a child just forked: the descriptors only the master uses, except `keeping`.
    private func closeMasterOnlyFDs(keeping: [Int32]) {
        SignalQueue.closeInChild()
        Sys.close(status.readFD)
        if let fifo { Sys.close(fifo.fd) }
        observers.closeInChild()
        for fd in sockets.values where fd >= 0 && !keeping.contains(fd) { Sys.close(fd) }
        for gen in generations.values { Sys.close(gen.zygote.commandFD) }
        Sys.close(tally.fd)  // mapped already; only the master hands it on
    }

    /// Tells a worker to stop accepting and finish its requests within --reload-mercy.
    func retire(_ worker: WorkerTable.Worker) {
        let mercy = (generations[worker.generation]?.config ?? config).reloadMercy
        guard table.retire(slot: worker.slot, pid: worker.pid, deadline: Sys.now() + mercy) else { return }
        tally.set(Int(worker.slot), -1)
        // Drain, leaving the queued connections to the workers that stay. One still being
        // forked is told when it says `ready`.
        deliver(SIGHUP, to: worker.pid)
    }

    /// Workers past their deadline are told to log what they cut and exit (SIGUSR2), and
    /// killed a second later if they have not.
    func enforceDeadlines(_ t: Double) {
        for due in table.dueDeadlines(now: t) {
            switch due {
            case let .cut(w):
                Log.warning("worker \(w.slot) (pid \(w.pid)) still busy at its deadline: cutting its requests")
                deliver(SIGUSR2, to: w.pid)
            case let .kill(w):
                deliver(SIGKILL, to: w.pid)
            }
        }
    }

    /// Collects every child that exited and decides what its exit means. waitpid fails
    /// only with ECHILD (no children left), which ends the collection like WNOHANG's 0.
    func reapChildren() {
        var status: Int32 = 0
        while case let .done(n) = Sys.call({ waitpid(-1, &status, WNOHANG) }), n > 0 {
            let pid = pid_t(n)
            let exitCode = (status & 0x7f) == 0 ? (status >> 8) & 0xff : -1
            let how = describeExit(status)
            if upgradeCheckExited(pid: pid, exitCode: exitCode, how: how) { continue }
            if daemonExited(pid: pid, how: how) { continue }
            if let g = generations.first(where: { $0.value.zygote.pid == pid })?.key {
                zygoteExited(g, exitCode: exitCode, how: how)
                continue
            }
            let killedForMemory = recycleWatch.killed.contains(pid)
            recycleWatch.forget(pid: pid)
            guard let record = table.remove(pid: pid) else { continue }
            foldAnswers(ofWorker: pid, slot: record.slot)
            tally.set(Int(record.slot), -1)
            if stopping || record.retiring {
                if exitCode != 0 { Log.warning("worker \(record.slot) (pid \(pid)) \(how)") }
                // A worker cut at its deadline wrote its own lines (SIGUSR2).
                if !record.cutSent { logInFlight(of: record) }
                continue
            }
            let g = record.generation
            if g == plan.incoming {
                perform(plan.failed(generation: g, reason: "a worker of generation \(g) exited (\(how)) \(record.ready ? "after" : "before") it was ready",
                                    workers: workerCount(for: plan.pending)))
            } else if g == plan.serving {
                workerExited(record, exitCode: exitCode, how: how, killedForMemory: killedForMemory)
            }
            logInFlight(of: record)
        }
    }

    private func workerExited(_ record: WorkerTable.Worker, exitCode: Int32, how: String, killedForMemory: Bool) {
        if record.ready {
            // The master sends SIGKILL past a deadline (the worker is retiring then) and for
            // --evil-reload-on-rss; any other SIGKILL came from outside.
            let who = how.contains("(SIGKILL") && !killedForMemory
                ? ", not sent by the master: the kernel's OOM killer (see dmesg) or kill -9" : ""
            Log.warning("worker \(record.slot) (pid \(record.pid)) died (\(how)\(who)); respawning")
            counters.respawn(slot: record.slot)
            return
        }
        counters.respawn(slot: record.slot)
        let delay = table.workerBootFailed(now: Sys.now())
        if exitCode == WorkerExit.appLoadError && !table.everReady {
            halt("no worker could import the application (see the traceback above)")
            return
        }
        logBootFailure("worker \(record.slot) (pid \(record.pid)) died while starting (\(how))", delay: delay)
    }

    /// The first boot failure in a row is logged with the back-off; the next ones are not
    /// (each has its own traceback or exit above it), until a worker is ready again.
    private func logBootFailure(_ what: String, delay: Double) {
        if table.bootFailures == 1 {
            Log.warning("\(what); retrying in \(delay) s, then with a back-off doubling up to \(Int(WorkerTable.maxBackOff)) s (further failures are not logged until a worker starts)")
        }
    }

    private func zygoteExited(_ g: UInt32, exitCode: Int32, how: String) {
        guard let gen = generations[g] else { return }
        let zygote = gen.zygote
        let wasReady = zygote.isReady
        zygote.exited()
        if stopping { return }
        if g == plan.incoming {
            perform(plan.failed(generation: g, reason: "the \(zygote.name) of generation \(g) exited (\(how))\(exitCode == WorkerExit.appLoadError ? ": the application could not be imported (see the traceback above)" : "")",
                                workers: workerCount(for: plan.pending)))
        } else if g == plan.serving {
            if exitCode == WorkerExit.appLoadError && !table.everReady {
                halt("the application could not be imported (see the traceback above)")
                return
            }
            // Workers still being forked by it will never come.
            table.dropUnborn(generation: g)
            if wasReady {
                table.delaySpawns(until: Sys.now())
                Log.warning("the \(zygote.name) exited (\(how)); starting a new one")
            } else {
                let delay = table.zygoteBootFailed(now: Sys.now())
                logBootFailure("the \(zygote.name) exited before it was ready (\(how))", delay: delay)
            }
        } else {
            generations[g] = nil  // an older generation's zygote, done
            mapLibraries()
        }
    }
}

/// Sends `sig` to a child. One that already exited (ESRCH) is reaped on this turn of the
/// loop; any other failure is logged. A pid of 0 (a worker not started yet) is skipped.
func deliver(_ sig: Int32, to pid: pid_t) {
    guard pid > 0 else { return }
    switch Sys.kill(pid, sig) {
    case .done, .wouldBlock, .failed(ESRCH): break
    case let .failed(e): Log.warning("cannot signal pid \(pid): \(Sys.describe(e))")
    }
}
