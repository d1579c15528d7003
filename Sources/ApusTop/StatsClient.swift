// Reading one stats document from a server: connect, (for HTTP) send a GET, read until the
// server closes, all within one deadline and at most `maxResponse` bytes, since the server
// may be anything listening at that address.

#if canImport(Glibc)
import Glibc
#endif
import ApusSys

public enum StatsClient {
    /// Bytes read at most: the largest JSON document plus room for an HTTP head.
    static let maxResponse = JSON.maxBytes + 65536

    public struct Failure: Error, Equatable, CustomStringConvertible {
        public let description: String
        /// The exchange was given up because one of the `interrupt` descriptors became
        /// readable (a key or a signal for the terminal loop), not because of the server.
        public var interrupted = false
    }

    /// One document from `address`, parsed, or why not. `timeout`: seconds for the whole
    /// exchange. Readable data on any of `interrupt` ends the wait at once.
    public static func fetch(_ address: StatsAddress, timeout: Double, wallClock: Double,
                             interrupt: [Int32] = []) -> Result<StatsSnapshot, Failure> {
        let bytes: [UInt8]
        switch exchange(address, timeout: timeout, interrupt: interrupt) {
        case let .failure(f): return .failure(f)
        case let .success(b): bytes = b
        }
        var body = bytes
        if case .http = address {
            switch httpBody(bytes) {
            case let .failure(f): return .failure(f)
            case let .success(b): body = b
            }
        }
        do {
            return .success(try StatsSnapshot(try JSON.parse(body), now: wallClock))
        } catch let e as JSON.ParseError {
            return .failure(Failure(description: "not JSON: \(e.description)"))
        } catch let e as StatsSnapshot.NotStats {
            return .failure(Failure(description: e.description))
        } catch {
            return .failure(Failure(description: "\(error)"))
        }
    }

    /// The body of an HTTP/1.x response read to its end: status 200 only; framed by
    /// Content-Length, chunked, or the end of the connection.
    static func httpBody(_ response: [UInt8]) -> Result<[UInt8], Failure> {
        guard let headEnd = find(response, [13, 10, 13, 10]) else {
            return .failure(Failure(description: "incomplete HTTP response"))
        }
        let head = String(decoding: response[..<headEnd], as: UTF8.self)
        let lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusParts = lines[0].split(separator: " ", maxSplits: 2)
        guard statusParts.count >= 2, statusParts[0].hasPrefix("HTTP/1.") else {
            return .failure(Failure(description: "not an HTTP response"))
        }
        guard statusParts[1] == "200" else {
            return .failure(Failure(description: "HTTP status " + lines[0].dropFirst(statusParts[0].count + 1).prefix(60)))
        }
        var length: Int?
        var chunked = false
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingSpaces
            if name == "content-length" {
                guard let n = Int(value), n >= 0 else { return .failure(Failure(description: "bad Content-Length")) }
                length = n
            } else if name == "transfer-encoding" {
                chunked = value.lowercased().hasSuffix("chunked")
            }
        }
        let rest = Array(response[(headEnd + 4)...])
        if chunked { return dechunk(rest) }
        if let length {
            guard rest.count >= length else { return .failure(Failure(description: "HTTP body shorter than its Content-Length")) }
            return .success(Array(rest[..<length]))
        }
        return .success(rest)
    }

    /// A chunked body: hex size lines (extensions ignored), data, CRLF, up to the 0 chunk.
    static func dechunk(_ bytes: [UInt8]) -> Result<[UInt8], Failure> {
        var out: [UInt8] = []
        var at = 0
        while true {
            guard let lineEnd = find(bytes[at...], [13, 10]) else { return .failure(Failure(description: "bad chunked body")) }
            let sizeText = String(decoding: bytes[at..<lineEnd], as: UTF8.self).prefix { $0 != ";" }.trimmingSpaces
            guard !sizeText.isEmpty, sizeText.count <= 8, let size = Int(sizeText, radix: 16) else {
                return .failure(Failure(description: "bad chunk size"))
            }
            at = lineEnd + 2
            if size == 0 { return .success(out) }
            guard bytes.count - at >= size + 2 else { return .failure(Failure(description: "chunked body cut short")) }
            out += bytes[at..<(at + size)]
            at += size + 2
        }
    }

    /// The index where `needle` starts in `haystack`, if it does.
    static func find(_ haystack: ArraySlice<UInt8>, _ needle: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        var i = haystack.startIndex
        while i + needle.count <= haystack.endIndex {
            if haystack[i] == needle[0] && haystack[i..<(i + needle.count)].elementsEqual(needle) { return i }
            i += 1
        }
        return nil
    }

    static func find(_ haystack: [UInt8], _ needle: [UInt8]) -> Int? { find(haystack[...], needle) }

    // MARK: - The socket

    /// Connects, sends the request (HTTP only) and reads until the server closes.
    static func exchange(_ address: StatsAddress, timeout: Double, interrupt: [Int32]) -> Result<[UInt8], Failure> {
        let waiter = Waiter(deadline: Sys.now() + timeout, interrupt: interrupt)
        let fd: Int32
        switch connectTo(address, waiter) {
        case let .failure(f): return .failure(f)
        case let .success(s): fd = s
        }
        defer { Sys.close(fd) }
        if case let .http(host, port, path) = address {
            var request = "GET \(path) HTTP/1.0\r\nHost: \(host.contains(":") ? "[\(host)]" : host):\(port)\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
            let sent = request.withUTF8 { buf in writeAll(fd, UnsafeRawBufferPointer(buf), waiter) }
            if let sent { return .failure(sent) }
        }
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            if var f = waiter.wait(fd, for: Int16(POLLIN)) {
                if case .http = address {} else if data.isEmpty && !f.interrupted {
                    // A plain stats server writes at once; one that waits may speak HTTP.
                    f = Failure(description: f.description + " (a --stats-http server? give http://HOST:PORT/)")
                }
                return .failure(f)
            }
            switch Sys.call({ read(fd, &chunk, chunk.count) }) {
            case .done(0): return .success(data)
            case let .done(n):
                guard data.count + n <= maxResponse else { return .failure(Failure(description: "answer larger than \(maxResponse) bytes")) }
                data += chunk[0..<n]
            case .wouldBlock: continue
            case let .failed(e): return .failure(Failure(description: "read: \(Sys.describe(e))"))
            }
        }
    }

    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, _ waiter: Waiter) -> Failure? {
        var sent = 0
        while sent < bytes.count {
            if let f = waiter.wait(fd, for: Int16(POLLOUT)) { return f }
            switch Sys.call({ send(fd, bytes.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }) {
            case let .done(n): sent += n
            case .wouldBlock: continue
            case let .failed(e): return Failure(description: "send: \(Sys.describe(e))")
            }
        }
        return nil
    }

    /// The deadline of one exchange, and the descriptors that cut it short.
    struct Waiter {
        let deadline: Double
        let interrupt: [Int32]

        /// Waits until `fd` is ready for `events`; a failure when the deadline has passed or
        /// an `interrupt` descriptor is readable.
        func wait(_ fd: Int32, for events: Int16) -> Failure? {
            var polled = [pollfd(fd: fd, events: events, revents: 0)]
                + interrupt.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            while true {
                let left = deadline - Sys.now()
                guard left > 0 else { return Failure(description: "no answer within the timeout") }
                switch Sys.call({ poll(&polled, nfds_t(polled.count), Int32(min(left * 1000 + 1, 60_000))) }) {
                case .done(0), .wouldBlock: continue
                case .done:
                    if polled.dropFirst().contains(where: { $0.revents != 0 }) {
                        return Failure(description: "interrupted", interrupted: true)
                    }
                    return nil
                case let .failed(e): return Failure(description: "poll: \(Sys.describe(e))")
                }
            }
        }
    }

    /// A non-blocking, close-on-exec stream socket connected to `address`.
    static func connectTo(_ address: StatsAddress, _ waiter: Waiter) -> Result<Int32, Failure> {
        switch address {
        case let .unix(path):
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            var bytes = Array(path.utf8)
            guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
                return .failure(Failure(description: "path too long for a unix socket"))
            }
            // "@name": Linux's abstract namespace, as uWSGI spells it.
            if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
            withUnsafeMutableBytes(of: &addr.sun_path) { raw in
                for (i, b) in bytes.enumerated() { raw[i] = b }
            }
            let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (bytes.first == 0 ? 0 : 1))
            return withUnsafePointer(to: &addr) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                    connectSocket(family: AF_UNIX, sa, length, waiter)
                }
            }
        case let .tcp(host, port), let .http(host, port, _):
            var hints = addrinfo()
            hints.ai_family = AF_UNSPEC
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            hints.ai_flags = AI_NUMERICSERV
            var res: UnsafeMutablePointer<addrinfo>?
            let rc = getaddrinfo(host, String(port), &hints, &res)
            guard rc == 0, let first = res else {
                return .failure(Failure(description: "cannot resolve \(host): \(String(cString: gai_strerror(rc)))"))
            }
            defer { freeaddrinfo(res) }
            var last = Failure(description: "no address for \(host)")
            var ai: UnsafeMutablePointer<addrinfo>? = first
            while let a = ai {
                switch connectSocket(family: a.pointee.ai_family, a.pointee.ai_addr, a.pointee.ai_addrlen, waiter) {
                case let .success(fd): return .success(fd)
                case let .failure(f):
                    if f.interrupted { return .failure(f) }
                    last = f
                }
                ai = a.pointee.ai_next
            }
            return .failure(last)
        }
    }

    static func connectSocket(family: Int32, _ sa: UnsafePointer<sockaddr>, _ length: socklen_t, _ waiter: Waiter) -> Result<Int32, Failure> {
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { return .failure(Failure(description: "socket: \(Sys.describe(errno))")) }
        if connect(fd, sa, length) != 0 {
            let e = errno
            guard e == EINPROGRESS || e == EAGAIN || e == EINTR else {
                Sys.close(fd)
                return .failure(Failure(description: Sys.describe(e)))
            }
            if let f = waiter.wait(fd, for: Int16(POLLOUT)) {
                Sys.close(fd)
                return .failure(f)
            }
            var soError: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            if getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &len) != 0 || soError != 0 {
                Sys.close(fd)
                return .failure(Failure(description: Sys.describe(soError != 0 ? soError : errno)))
            }
        }
        return .success(fd)
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces and tabs.
    var trimmingSpaces: String {
        let scalars = Array(unicodeScalars)
        var start = 0, end = scalars.count
        while start < end && (scalars[start] == " " || scalars[start] == "\t") { start += 1 }
        while end > start && (scalars[end - 1] == " " || scalars[end - 1] == "\t") { end -= 1 }
        var out = String.UnicodeScalarView()
        out.append(contentsOf: scalars[start..<end])
        return String(out)
    }
}
