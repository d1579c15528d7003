#if canImport(Glibc)
import Glibc
#endif

/// How full a listening socket's accept queue is, for the stats' `listen_queue` and
/// `sockets[].queue`. On Linux, TCP_INFO on a listening TCP socket reports the connections
/// waiting to be accepted in `tcpi_unacked` and the backlog in `tcpi_sacked` (what uWSGI
/// reads too). Other sockets (unix) report nothing: nil.
enum ListenQueue {
    static func read(_ fd: Int32) -> (queue: Int, max: Int)? {
        var info = tcp_info()
        var size = socklen_t(MemoryLayout<tcp_info>.size)
        guard getsockopt(fd, Int32(IPPROTO_TCP), TCP_INFO, &info, &size) == 0 else { return nil }
        return (Int(info.tcpi_unacked), Int(info.tcpi_sacked))
    }
}
