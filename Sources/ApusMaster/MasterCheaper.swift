#if canImport(Glibc)
import Glibc
#endif
import ApusConfig
import ApusObserve

/// `--cheaper`: the master samples the scoreboard and lets `Cheaper` decide how many
/// workers the serving generation wants, between --cheaper and --processes.
extension Master {
    /// The workers a generation starts with: --cheaper when adaptive, else --processes.
    static func initialWorkers(_ config: Configuration) -> Int {
        config.cheaper > 0 ? config.cheaper : config.processes
    }

    /// The policy for `config`, nil when --cheaper is off.
    static func cheaperPolicy(_ config: Configuration) -> Cheaper? {
        guard config.cheaper > 0 else { return nil }
        return Cheaper(minimum: config.cheaper, maximum: config.processes, idleAfter: config.cheaperIdle,
                       threads: config.threads)
    }

    /// About twice a second, outside reloads: one worker more or one less when the load asks.
    func adaptWorkers(now t: Double) {
        guard var policy = cheaper, !plan.isReloading, !stopping, t - cheaperSampledAt >= 0.5 else { return }
        cheaperSampledAt = t
        let threads = config.threads
        let staying = table.workers.filter { $0.generation == plan.serving && !$0.retiring && $0.recycling == nil }
        let samples = staying.filter { $0.ready && $0.pid > 0 }.compactMap { w -> Cheaper.Sample? in
            let slot = tally.board.slot(Int(w.slot))
            guard slot.pid == w.pid else { return nil }
            return Cheaper.Sample(pid: w.pid, busyMicros: slot.busyMicros, coresBusy: slot.busyCores(threads: threads))
        }
        let starting = staying.count - samples.count + (generations[plan.serving]?.zygote.pendingSpawns ?? 0)
        let decision = policy.decide(samples, desired: table.desired, starting: starting, now: t)
        cheaper = policy
        switch decision {
        case .keep:
            return
        case .add:
            table.desired += 1
            Log.info("cheaper: all workers busy (\(samples.count)): starting one more (\(table.desired) wanted, at most \(policy.maximum))")
        case .remove:
            table.desired -= 1
            Log.info("cheaper: the load fitted in fewer workers for \(policy.idleAfter) s: retiring one (\(table.desired) wanted, at least \(policy.minimum))")
        }
        keepStrength(now: t)
    }
}
