#if canImport(Glibc)
import Glibc
#endif
import ApusIPC

/// `--stats`: the workers' state as JSON in uWSGI's stats format.
extension Master {
    func statsDocument() -> [UInt8] {
        // Placeholder until the full document lands: the master's pid and the workers' pids.
        let workers = table.workers.sorted { $0.slot < $1.slot }
            .map { "{\"id\":\($0.slot + 1),\"pid\":\($0.pid),\"generation\":\($0.generation)}" }
            .joined(separator: ",")
        return Array("{\"version\":\"apus \(version)\",\"pid\":\(getpid()),\"workers\":[\(workers)]}\n".utf8)
    }
}
