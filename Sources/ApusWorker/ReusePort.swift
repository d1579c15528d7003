#if canImport(Glibc)
import Glibc
#endif
import CApusSys
import ApusObserve
import ApusSys

/// `--reuse-port`: the master binds a TCP socket with SO_REUSEPORT but does not listen, so
/// the socket is not yet in the kernel's reuse-port group of its address and gets no
/// connection. A worker that has the app loaded joins it: it counts the other sockets
/// listening on the same address (other instances, from /proc/net/tcp or tcp6), listens, and
/// attaches a one-instruction BPF program to the group that returns that count. The kernel
/// appends a socket that starts listening at index = the number of members, so the program
/// sends every new connection to the newest instance; when a member leaves, the last one
/// takes its slot, and an index past the end falls back to the kernel's hash. An instance
/// that is being replaced thus only drains its queue.
enum ReusePort {
    enum Outcome: Equatable {
        /// Another worker of this instance (or an earlier generation) already made it listen.
        case alreadyListening
        /// Listening now; `others` sockets of other instances listened on the address before.
        case joined(others: Int)
        /// Listening, but the steering program could not be attached: connections are shared
        /// by the kernel's hash between the instances.
        case joinedUnsteered(others: Int, error: Int32)
        /// /proc could not be read: listening, connections shared by the kernel's hash.
        case joinedUncounted(error: Int32)
    }

    struct Failure: Error {
        let call: String
        let error: Int32
    }

    /// Makes `fd` listen unless it does already; see the type's comment.
    static func join(_ fd: Int32, backlog: Int) throws(Failure) -> Outcome {
        var on: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        if case let .failed(e) = Sys.call({ getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) }) {
            throw Failure(call: "getsockopt(SO_ACCEPTCONN)", error: e)
        }
        if on != 0 { return .alreadyListening }
        var others: Int? = nil
        var readError: Int32 = 0
        if let (family, address) = localAddress(fd) {
            var st = stat()
            if case let .failed(e) = Sys.call({ fstat(fd, &st) }) { throw Failure(call: "fstat", error: e) }
            switch readProcFile(family == AF_INET6 ? "/proc/net/tcp6" : "/proc/net/tcp") {
            case let .success(text):
                others = countListening(in: text, address: address, excludingInode: UInt64(st.st_ino))
            case let .failure(e):
                readError = e.error
            }
        } else {
            readError = errno
        }
        // The own socket is left out of the count, so two workers that join at once attach
        // the same program; listen() on a socket that listens already only sets the backlog.
        if case let .failed(e) = Sys.call({ listen(fd, Int32(backlog)) }) { throw Failure(call: "listen", error: e) }
        guard let others else { return .joinedUncounted(error: readError) }
        if others == 0 { return .joined(others: 0) }
        if case let .failed(e) = Sys.call({ apus_attach_reuseport_index(fd, UInt32(others)) }) {
            return .joinedUnsteered(others: others, error: e)
        }
        return .joined(others: others)
    }

    /// The socket's family and its local address as /proc/net/tcp writes it.
    private static func localAddress(_ fd: Int32) -> (Int32, String)? {
        var addr = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        guard rc == 0 else { return nil }
        let family = Int32(addr.ss_family)
        return withUnsafePointer(to: &addr) { p -> (Int32, String)? in
            switch family {
            case AF_INET:
                return p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { s in
                    let bytes = withUnsafeBytes(of: s.pointee.sin_addr) { Array($0) }
                    return (AF_INET, procAddress(bytes, port: Int(UInt16(bigEndian: s.pointee.sin_port))))
                }
            case AF_INET6:
                return p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { s in
                    let bytes = withUnsafeBytes(of: s.pointee.sin6_addr) { Array($0) }
                    return (AF_INET6, procAddress(bytes, port: Int(UInt16(bigEndian: s.pointee.sin6_port))))
                }
            default:
                return nil
            }
        }
    }

    /// An address (4 or 16 bytes in network order) and a port as /proc/net/tcp and tcp6 write
    /// them: each 32-bit word of the address as the host reads it, in hex (%08X), then ":"
    /// and the port (%04X). On a little-endian host 127.0.0.1:8000 is "0100007F:1F40".
    static func procAddress(_ bytes: [UInt8], port: Int) -> String {
        var out = ""
        var i = 0
        while i + 4 <= bytes.count {
            let word = bytes[i..<i + 4].withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
            out += hex(UInt64(word), digits: 8)
            i += 4
        }
        return out + ":" + hex(UInt64(port), digits: 4)
    }

    private static func hex(_ value: UInt64, digits: Int) -> String {
        let s = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, digits - s.count)) + s
    }

    /// How many sockets in a /proc/net/tcp (or tcp6) table listen (state 0A) on `address`
    /// (in `procAddress`'s form), leaving out the socket with inode `own`. A line is
    /// "sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...".
    static func countListening(in text: String, address: String, excludingInode own: UInt64) -> Int {
        var count = 0
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count > 9, fields[3] == "0A", fields[1].uppercased() == address,
                  let inode = UInt64(fields[9]), inode != own else { continue }
            count += 1
        }
        return count
    }

    private static func readProcFile(_ path: String) -> Result<String, Failure> {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .failure(Failure(call: "open \(path)", error: errno)) }
        defer { Sys.close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let r = chunk.withUnsafeMutableBytes { b in Sys.call { read(fd, b.baseAddress, b.count) } }
            switch r {
            case let .done(n):
                if n == 0 { return .success(String(decoding: bytes, as: UTF8.self)) }
                bytes += chunk[0..<n]
            case .wouldBlock:
                continue
            case let .failed(e):
                return .failure(Failure(call: "read \(path)", error: e))
            }
        }
    }
}
