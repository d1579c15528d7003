#if canImport(Glibc)
import Glibc
#endif
import CApusSys
import ApusConfig
import ApusSys

/// Opens the listening sockets. The master owns them for its whole life; workers inherit them.
public enum ListenSocket {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// - Parameters:
    ///   - mode: `--chmod-socket` for unix sockets.
    ///   - owner: `--chown-socket` ("user" or "user:group") for unix sockets.
    ///   - reusePort: `--reuse-port`: a TCP socket gets SO_REUSEPORT and is only bound; the
    ///     first worker with the app loaded makes it listen (`ReusePort.join` in ApusWorker).
    public static func open(_ bind: Bind, backlog: Int, mode: UInt32? = nil, owner: String? = nil,
                            reusePort: Bool = false) throws(Failure) -> Int32 {
        switch bind.address {
        case let .tcp(host, port):
            return try openTCP(host: host, port: port, backlog: backlog, reusePort: reusePort, label: bind.description)
        case let .unix(path):
            let fd = try openUnix(path: path, backlog: backlog, label: bind.description)
            do throws(Failure) {
                if let mode, chmod(path, mode_t(mode)) != 0 {
                    throw Failure(description: "--chmod-socket: cannot change \(path): \(String(cString: strerror(errno)))")
                }
                if let owner { try changeOwner(path, owner) }
            } catch {
                Sys.close(fd)
                removeFile(path)
                throw error
            }
            return fd
        case let .fd(fd):
            try adopt(fd, label: bind.description)
            return fd
        }
    }

    private static func changeOwner(_ path: String, _ owner: String) throws(Failure) {
        let parts = owner.split(separator: ":").map(String.init)
        var uid = uid_t.max, gid = gid_t.max
        if let pw = getpwnam(parts[0]) { uid = pw.pointee.pw_uid; gid = pw.pointee.pw_gid }
        else if let n = UInt32(parts[0]) { uid = n }
        else { throw Failure(description: "--chown-socket: no user \(parts[0])") }
        if parts.count > 1 {
            if let gr = getgrnam(parts[1]) { gid = gr.pointee.gr_gid }
            else if let n = UInt32(parts[1]) { gid = n }
            else { throw Failure(description: "--chown-socket: no group \(parts[1])") }
        }
        if chown(path, uid, gid) != 0 {
            throw Failure(description: "--chown-socket: cannot change \(path): \(String(cString: strerror(errno)))")
        }
    }

    private static func openTCP(host: String, port: Int, backlog: Int, reusePort: Bool, label: String) throws(Failure) -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        var res: UnsafeMutablePointer<addrinfo>?
        let h = host.isEmpty ? "0.0.0.0" : host
        let rc = getaddrinfo(h, String(port), &hints, &res)
        guard rc == 0, let ai = res else {
            throw Failure(description: "cannot resolve \(label): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(res) }
        let fd = socket(ai.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket() for \(label): \(String(cString: strerror(errno)))") }
        try enable(fd, SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR", label: label)
        if reusePort { try enable(fd, SOL_SOCKET, SO_REUSEPORT, "SO_REUSEPORT", label: label) }
        if ai.pointee.ai_family == AF_INET6 {
            try enable(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, "IPV6_V6ONLY", label: label)
        }
        try bindAndListen(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen, backlog: reusePort ? nil : backlog, label: label)
        return fd
    }

    /// Sets a boolean socket option, or closes `fd` and throws a line naming the bind.
    private static func enable(_ fd: Int32, _ level: Int32, _ option: Int32, _ name: String, label: String) throws(Failure) {
        var one: Int32 = 1
        if case let .failed(e) = Sys.call({ setsockopt(fd, level, option, &one, socklen_t(MemoryLayout<Int32>.size)) }) {
            Sys.close(fd)
            throw Failure(description: "cannot set \(name) on \(label): \(Sys.describe(e))")
        }
    }

    /// Binds and listens (only binds when `backlog` is nil), or closes `fd` and throws a line
    /// naming the bind.
    private static func bindAndListen(_ fd: Int32, _ addr: UnsafePointer<sockaddr>, _ len: socklen_t,
                                      backlog: Int?, label: String) throws(Failure) {
        if case let .failed(e) = Sys.call({ Glibc.bind(fd, addr, len) }) {
            Sys.close(fd)
            throw Failure(description: "cannot bind \(label): \(Sys.describe(e))")
        }
        guard let backlog else { return }
        if case let .failed(e) = Sys.call({ listen(fd, Int32(backlog)) }) {
            Sys.close(fd)
            throw Failure(description: "cannot listen on \(label): \(Sys.describe(e))")
        }
    }

    private static func openUnix(path: String, backlog: Int, label: String) throws(Failure) -> Int32 {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            throw Failure(description: "unix socket path too long: \(path)")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { p in
            for (i, b) in bytes.enumerated() { p[i] = b }
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket() for \(label): \(String(cString: strerror(errno)))") }
        // A socket file left by an earlier run that nobody listens on any more is replaced.
        var st = stat()
        if lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFSOCK {
            if !isListening(&addr) { removeFile(path) }
        }
        let sockaddrBytes = addr
        try withUnsafeBytes(of: sockaddrBytes) { (raw) throws(Failure) in
            try bindAndListen(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self),
                              socklen_t(MemoryLayout<sockaddr_un>.size), backlog: backlog, label: label)
        }
        return fd
    }

    private static func isListening(_ addr: inout sockaddr_un) -> Bool {
        let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard probe >= 0 else { return false }  // the bind that follows reports what is wrong
        defer { Sys.close(probe) }
        return withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                Sys.call { connect(probe, sa, socklen_t(MemoryLayout<sockaddr_un>.size)) }.value != nil
            }
        }
    }
}
