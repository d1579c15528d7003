#if canImport(Glibc)
import Glibc
#endif
import ApusIPC

/// `--metrics`: Prometheus's text format at `/metrics`.
extension Master {
    func metricsText() -> [UInt8] {
        // Placeholder until the metrics land.
        Array("# apus metrics\n".utf8)
    }
}
