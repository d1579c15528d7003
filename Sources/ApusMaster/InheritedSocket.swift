#if canImport(Glibc)
import Glibc
#endif
import ApusConfig
import ApusSys

/// Listening sockets inherited from the parent (`--fd N`, `fd://N`, systemd's LISTEN_FDS):
/// checked and adopted, never bound, listened on or unlinked by Apus. Their backlog is the
/// parent's.
extension ListenSocket {
    /// Checks that `fd` is a listening TCP or unix stream socket and marks it close-on-exec,
    /// as the master's own sockets are. The error is one line naming the descriptor.
    public static func adopt(_ fd: Int32, label: String) throws(Failure) {
        func fail(_ what: String) -> Failure { Failure(description: "inherited fd \(fd) (\(label)) \(what)") }
        var st = stat()
        if case let .failed(e) = Sys.call({ fstat(fd, &st) }) {
            throw fail(e == EBADF ? "is not open" : "cannot be examined: \(Sys.describe(e))")
        }
        guard (st.st_mode & S_IFMT) == S_IFSOCK else { throw fail("is not a socket") }
        guard let type = intOption(fd, SO_TYPE), type == Int32(SOCK_STREAM.rawValue) else {
            throw fail("is not a stream socket")
        }
        guard let domain = intOption(fd, SO_DOMAIN), [AF_INET, AF_INET6, AF_UNIX].contains(domain) else {
            throw fail("is neither a TCP nor a unix socket")
        }
        guard intOption(fd, SO_ACCEPTCONN) == 1 else { throw fail("is not listening (no listen() on it)") }
        guard let flags = Sys.call({ fcntl(fd, F_GETFD) }).value,
              Sys.call({ fcntl(fd, F_SETFD, Int32(flags) | FD_CLOEXEC) }).value != nil else {
            throw fail("cannot be made close-on-exec: \(Sys.describe(errno))")
        }
    }

    /// The local address of a socket, as a bind would name it; nil when it is not a TCP or
    /// unix socket (or not a socket at all: `adopt` says so).
    public static func localAddress(_ fd: Int32) -> Bind.Address? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutablePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                Sys.call { getsockname(fd, sa, &length) }.value != nil
            }
        }
        guard ok else { return nil }
        var host = [CChar](repeating: 0, count: 64)
        switch Int32(storage.ss_family) {
        case AF_INET:
            return withUnsafePointer(to: &storage) { p in
                p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { s in
                    var a = s.pointee.sin_addr
                    guard inet_ntop(AF_INET, &a, &host, 64) != nil else { return nil }
                    return .tcp(host: String(cString: host), port: Int(UInt16(bigEndian: s.pointee.sin_port)))
                }
            }
        case AF_INET6:
            return withUnsafePointer(to: &storage) { p in
                p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { s in
                    var a = s.pointee.sin6_addr
                    guard inet_ntop(AF_INET6, &a, &host, 64) != nil else { return nil }
                    return .tcp(host: String(cString: host), port: Int(UInt16(bigEndian: s.pointee.sin6_port)))
                }
            }
        case AF_UNIX:
            let pathOffset = MemoryLayout<sa_family_t>.size
            guard Int(length) > pathOffset else { return nil }  // unnamed
            let path = withUnsafeBytes(of: &storage) { raw in
                Array(raw[pathOffset..<Int(length)].prefix { $0 != 0 })
            }
            guard !path.isEmpty else { return nil }  // abstract namespace
            return .unix(path: String(decoding: path, as: UTF8.self))
        default:
            return nil
        }
    }

    private static func intOption(_ fd: Int32, _ option: Int32) -> Int32? {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard Sys.call({ getsockopt(fd, SOL_SOCKET, option, &value, &length) }).value != nil else { return nil }
        return value
    }
}
