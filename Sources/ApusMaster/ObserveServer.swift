#if canImport(Glibc)
import Glibc
#endif
import CApusSys
import ApusConfig
import ApusObserve
import ApusSys

/// The master's own small server for observers: `--stats` (uWSGI's stats socket: one JSON
/// document on connect, then close; HTTP with `--stats-http`) and `--metrics` (HTTP:
/// `/metrics`, `/healthz`, `/readyz`). It runs inside the master's poll loop, never blocks
/// and never starts a thread, so forking stays safe and a slow or hostile client costs the
/// master nothing but a descriptor for at most `timeout` seconds.
///
/// What is answered is the master's business (`answer`, MasterObserve.swift); this type only
/// accepts, reads a bounded request head, writes the answer and closes. One answer per
/// connection (`Connection: close`), which is what probes, scrapers and uwsgitop expect.
final class ObserveServer {
    /// Which listener a request came in on.
    enum Endpoint: Equatable { case stats, metrics }

    /// What a client asked: on a plain stats socket nothing (`path` nil), else an HTTP
    /// request line's method and path (the query string cut off).
    struct Request: Equatable {
        let endpoint: Endpoint
        let method: String?
        let path: String?
    }

    /// What goes back: for plain stats sockets the body alone.
    struct Answer {
        var status: Int
        var contentType: String
        var body: [UInt8]

        static func text(_ status: Int, _ text: String) -> Answer {
            Answer(status: status, contentType: "text/plain; charset=utf-8", body: Array(text.utf8))
        }
    }

    private struct Listener {
        let fd: Int32
        let endpoint: Endpoint
        let http: Bool
        let unixPath: String?
    }

    private struct Client {
        let fd: Int32
        let endpoint: Endpoint
        let http: Bool
        var input: [UInt8] = []
        var output: [UInt8] = []
        var written = 0
        var answered = false
        let deadline: Double
    }

    /// A request head larger than this is refused (431) and the connection closed.
    static let headLimit = 8192
    /// Connections held at once; more are closed at accept (observers retry).
    static let clientLimit = 64
    /// Seconds a client has to send its request and read the answer.
    static let timeout = 5.0

    private var listeners: [Listener] = []
    private var clients: [Client] = []

    /// Opens the `--stats` and `--metrics` listeners (in the master's set-up, before root is
    /// given up, like the app's sockets).
    func open(config: Configuration) throws(ListenSocket.Failure) {
        if let bind = config.statsBind { try add(bind, .stats, http: config.statsHTTP, config: config) }
        if let bind = config.metricsBind { try add(bind, .metrics, http: true, config: config) }
    }

    private func add(_ bind: Bind, _ endpoint: Endpoint, http: Bool, config: Configuration) throws(ListenSocket.Failure) {
        let fd = try ListenSocket.open(bind, backlog: 64, mode: config.socketMode, owner: config.socketOwner)
        _ = apus_set_cloexec(fd, 1)
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        var path: String?
        if case let .unix(p) = bind.address { path = p }
        listeners.append(Listener(fd: fd, endpoint: endpoint, http: http, unixPath: path))
        let at: String
        switch bind.address {
        case let .tcp(host, port): at = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case let .unix(p): at = "unix:\(p)"
        case let .fd(n): at = "fd://\(n)"
        }
        Log.info("\(endpoint == .stats ? "stats" : "metrics") on \(at)\(http ? " (HTTP)" : "")")
    }

    var isEmpty: Bool { listeners.isEmpty }

    /// The descriptors to poll, with what to wait for.
    func pollDescriptors() -> [pollfd] {
        listeners.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
            + clients.map { pollfd(fd: $0.fd, events: Int16($0.answered ? POLLOUT : POLLIN), revents: 0) }
    }

    /// Accepts what is waiting, reads what clients sent, answers complete requests, writes
    /// what sockets take, and closes clients that are done or past their deadline. Cheap
    /// when nothing happened: every descriptor is non-blocking.
    func serve(now: Double, answer: (Request) -> Answer) {
        for listener in listeners { accept(listener, now: now, answer: answer) }
        var kept: [Client] = []
        kept.reserveCapacity(clients.count)
        for var client in clients {
            if !client.answered { read(&client, answer: answer) }
            if client.answered { write(&client) }
            if client.answered && client.written == client.output.count || now > client.deadline {
                Sys.close(client.fd)
            } else {
                kept.append(client)
            }
        }
        clients = kept
    }

    private func accept(_ listener: Listener, now: Double, answer: (Request) -> Answer) {
        while true {
            guard case let .done(n) = Sys.call({ apus_accept(listener.fd, nil, nil) }) else { return }
            let fd = Int32(n)
            if clients.count >= Self.clientLimit {
                Sys.close(fd)
                continue
            }
            var client = Client(fd: fd, endpoint: listener.endpoint, http: listener.http, deadline: now + Self.timeout)
            if !listener.http {
                // uWSGI's stats socket: the document at once, nothing read.
                client.output = answer(Request(endpoint: listener.endpoint, method: nil, path: nil)).body
                client.answered = true
                write(&client)
            } else {
                read(&client, answer: answer)
                if client.answered { write(&client) }
            }
            if client.answered && client.written == client.output.count { Sys.close(fd) } else { clients.append(client) }
        }
    }

    private func read(_ client: inout Client, answer: (Request) -> Answer) {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while !client.answered {
            let r = chunk.withUnsafeMutableBytes { b in Sys.call { recv(client.fd, b.baseAddress, b.count, 0) } }
            switch r {
            case .wouldBlock: return
            case .failed, .done(0):
                client.answered = true  // gone: nothing to answer
                client.output = []
                return
            case let .done(n):
                client.input.append(contentsOf: chunk[0..<n])
                switch ObserveRequestHead.parse(client.input, limit: Self.headLimit) {
                case .incomplete: continue
                case let .complete(method, path):
                    let a = answer(Request(endpoint: client.endpoint, method: method, path: path))
                    client.output = ObserveRequestHead.response(a, includeBody: method != "HEAD")
                    client.answered = true
                case let .refused(status, reason):
                    client.output = ObserveRequestHead.response(.text(status, reason + "\n"), includeBody: true)
                    client.answered = true
                }
            }
        }
    }

    private func write(_ client: inout Client) {
        while client.written < client.output.count {
            let r = client.output.withUnsafeBytes { b in
                Sys.call { send(client.fd, b.baseAddress! + client.written, b.count - client.written, Int32(MSG_NOSIGNAL)) }
            }
            switch r {
            case let .done(n): client.written += n
            case .wouldBlock: return
            case .failed:
                client.written = client.output.count  // gone: done with it
                return
            }
        }
    }

    /// In a child just forked: none of these are the child's.
    func closeInChild() {
        for l in listeners { Sys.close(l.fd) }
        for c in clients { Sys.close(c.fd) }
    }

    /// At the master's exit: close, and remove unix sockets' files.
    func close() {
        closeInChild()
        for l in listeners { if let p = l.unixPath { unlink(p) } }
        listeners = []
        clients = []
    }
}

/// The little of HTTP/1.x the observer endpoints read: a request line and the end of the
/// head. Pure, so it is tested as a value; bytes from the socket are hostile.
enum ObserveRequestHead: Equatable {
    case incomplete
    case complete(method: String, path: String)
    case refused(status: Int, reason: String)

    static func parse(_ bytes: [UInt8], limit: Int) -> ObserveRequestHead {
        // The end of the head: CRLF CRLF (or LF LF from a lenient client).
        var end: Int?
        var i = 0
        while i < bytes.count {
            if bytes[i] == 10 {
                if i + 1 < bytes.count && bytes[i + 1] == 10 { end = i; break }
                if i + 2 < bytes.count && bytes[i + 1] == 13 && bytes[i + 2] == 10 { end = i; break }
            }
            i += 1
        }
        guard end != nil else {
            return bytes.count > limit ? .refused(status: 431, reason: "Request Header Fields Too Large") : .incomplete
        }
        guard let lineEnd = bytes.firstIndex(of: 10) else { return .refused(status: 400, reason: "Bad Request") }
        var line = bytes[0..<lineEnd]
        if line.last == 13 { line = line.dropLast() }
        let parts = line.split(separator: 32, omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, parts[0].allSatisfy({ $0 >= 65 && $0 <= 90 }),
              parts[1].first == UInt8(ascii: "/") || parts[1].first == UInt8(ascii: "*"),
              parts[1].allSatisfy({ $0 > 32 && $0 < 127 }),
              parts[2].elementsEqual("HTTP/1.1".utf8) || parts[2].elementsEqual("HTTP/1.0".utf8) else {
            return .refused(status: 400, reason: "Bad Request")
        }
        let target = parts[1]
        let path = target.firstIndex(of: UInt8(ascii: "?")).map { target[target.startIndex..<$0] } ?? target
        return .complete(method: String(decoding: parts[0], as: UTF8.self), path: String(decoding: path, as: UTF8.self))
    }

    static func response(_ answer: ObserveServer.Answer, includeBody: Bool) -> [UInt8] {
        let reason: String
        switch answer.status {
        case 200: reason = "OK"
        case 400: reason = "Bad Request"
        case 404: reason = "Not Found"
        case 405: reason = "Method Not Allowed"
        case 431: reason = "Request Header Fields Too Large"
        case 503: reason = "Service Unavailable"
        default: reason = "Status"
        }
        var out = Array("HTTP/1.1 \(answer.status) \(reason)\r\nContent-Type: \(answer.contentType)\r\nContent-Length: \(answer.body.count)\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n".utf8)
        if includeBody { out += answer.body }
        return out
    }
}
