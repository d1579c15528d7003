#if canImport(Glibc)
import Glibc
#endif
import CApusSys
import ApusConfig
import ApusMaster
import ApusObserve
import ApusProtocols
import ApusSys

/// `apus router`: runs the subscription router until it is stopped; returns the exit status.
public func runRouter(_ config: Configuration) -> Int32 {
    Log.role = "router"
    if let file = config.logFile {
        let fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0, dup2(fd, 2) >= 0 else {
            Log.error("--log-file: cannot open \(file): \(Sys.describe(errno))")
            return 1
        }
        Sys.close(fd)
    }
    guard let router = Router(config) else { return 1 }
    return router.run()
}

/// One process, one thread, one epoll loop (level-triggered: the interest of each socket
/// follows what its session waits for, which keeps back-pressure simple):
///
/// - HTTP listeners: each client connection is a `Client`. Its request head is read and
///   parsed with the workers' parser and limits; the Host picks a node in the
///   `SubscriptionTable`; the request goes to the node as a uwsgi packet (`uwsgiPacket`),
///   the body after it as it arrives (a chunked body is de-chunked in memory first, up to
///   `--body-buffer-size`, since a uwsgi packet needs CONTENT_LENGTH); the node's response
///   head is read strictly (`parseNodeResponseHead`), rewritten for the client
///   (`clientResponseHead`) and the body streamed back. A node answers one request per
///   connection and closes, so the router connects once per request; the client keeps its
///   connection (keep-alive) when the response says where it ends.
/// - The subscription server: a UDP socket; each datagram is one `SubscriptionPacket`.
/// - Signals arrive on a self-pipe: TERM/INT drain (stop accepting, finish what is in
///   flight, within `--shutdown-timeout`), QUIT stops at once.
final class Router {
    final class Client {
        let fd: Int32
        let connection: ProxiedConnection
        var input: [UInt8] = []
        var output: [UInt8] = []
        var outputSent = 0
        var head = HTTPRequestHead()
        enum Phase { case waiting, chunkedBody, proxying, closing }
        var phase = Phase.waiting
        var headStarted = false
        var deadline: Double
        var peerClosed = false
        var keepAlive = false
        var isHEAD = false
        var versionMinor = 1
        var key: [UInt8] = []
        /// Content-Length bytes still to pass from the client to the node.
        var bodyToNode = 0
        var decoder: ChunkedDecoder?
        var body: [UInt8] = []
        /// A chunked request's head, kept while its body is read.
        var headBytes: [UInt8] = []
        var node: Link?
        var interest: UInt32 = 0
        init(fd: Int32, connection: ProxiedConnection, deadline: Double) {
            self.fd = fd
            self.connection = connection
            self.deadline = deadline
        }
        var pendingOutput: Int { output.count - outputSent }
    }

    /// The connection to a node for one request.
    final class Link {
        let fd: Int32
        let address: [UInt8]
        var connected = false
        /// The uwsgi packet and body bytes not yet written. Kept whole until the connection
        /// is made, so a request can move to another node when the first cannot be reached.
        var request: [UInt8]
        var requestSent = 0
        /// The whole request (packet and body) while it fits in `replayLimit`, to offer it to
        /// another node if this one turns out to have been draining (below).
        var replay: [UInt8]?
        /// The nodes this request was offered to, this one included (a retry skips them).
        var tried: [[UInt8]] = []
        var response: [UInt8] = []
        var headDone = false
        var framing = ProxiedBodyFraming.none
        var remaining = 0
        var deadline: Double
        var interest: UInt32 = 0
        init(fd: Int32, address: [UInt8], request: [UInt8], deadline: Double) {
            self.fd = fd
            self.address = address
            self.request = request
            self.deadline = deadline
        }
        var pendingRequest: Int { request.count - requestSent }
    }

    /// What a node gets to accept a connection, and to send something once connected.
    static let connectTimeout = 5.0
    static let nodeTimeout = 60.0
    /// Bytes held for a slow reader before the other side is no longer read.
    static let highWater = 256 * 1024
    /// A client that reads nothing of its answer for this long is closed.
    static let sendTimeout = 30.0
    /// Largest request kept for a replay.
    static let replayLimit = 1 << 20

    let config: Configuration
    let epoll = Epoll()
    var listeners: [Int32: [UInt8]] = [:]   // fd → SERVER_PORT
    var udpFD: Int32 = -1
    var clients: [Int32: Client] = [:]
    var links: [Int32: Client] = [:]        // node fd → its client
    var table: SubscriptionTable
    let parser: HTTPRequestParser
    var draining = false
    var drainDeadline = 0.0
    var stopNow = false
    var budget = LogBudget(perSecond: 10)
    var nodeBudget = LogBudget(perSecond: 20)
    var lastSweep = 0.0

    enum Token: UInt64 { case listener = 1, client = 2, node = 3, udp = 4, signal = 5 }
    static func token(_ kind: Token, _ fd: Int32) -> UInt64 { kind.rawValue << 32 | UInt64(UInt32(bitPattern: fd)) }

    init?(_ config: Configuration) {
        self.config = config
        table = SubscriptionTable(algorithm: config.router.algorithm, tolerance: config.router.tolerance)
        var limits = HTTPParserLimits()
        limits.maxRequestLine = config.limits.maxRequestLine
        limits.maxHeaderBytes = config.limits.maxHeaderBytes
        limits.maxHeaderCount = config.limits.maxHeaderCount
        limits.maxFieldBytes = config.limits.maxFieldBytes
        limits.maxBodyBytes = config.limits.maxBodyBytes
        parser = HTTPRequestParser(limits: limits)
        SignalQueue.install([SIGTERM, SIGINT, SIGQUIT])
        do {
            for bind in config.binds {
                let fd = try ListenSocket.open(bind, backlog: config.listenBacklog)
                _ = apus_set_nonblocking(fd, 1)
                var port: [UInt8] = []
                if case let .tcp(_, p) = bind.address { appendDecimal(p, to: &port) }
                listeners[fd] = port
                add(fd, Epoll.readable, Self.token(.listener, fd))
            }
        } catch {
            Log.error("\(error)")
            return nil
        }
        guard let server = config.router.subscriptionServer else { return nil }
        switch openDatagram(server) {
        case let .success(fd): udpFD = fd
        case let .failure(message):
            Log.error("--subscription-server \(server): \(message)")
            return nil
        }
        add(udpFD, Epoll.readable, Self.token(.udp, udpFD))
        add(SignalQueue.readFD, Epoll.readable, Self.token(.signal, SignalQueue.readFD))
        if let pidfile = config.pidfile {
            guard let f = fopen(pidfile, "w") else {
                Log.error("--pidfile: cannot write \(pidfile): \(Sys.describe(errno))")
                return nil
            }
            fputs("\(getpid())\n", f)
            fclose(f)
        }
        let binds = config.binds.map(\.description).joined(separator: ", ")
        Log.info("apus router (pid \(getpid())) listening on \(binds), subscriptions on udp://\(server), algorithm \(config.router.algorithm.rawValue), tolerance \(config.router.tolerance) s")
    }

    private func add(_ fd: Int32, _ events: UInt32, _ token: UInt64) {
        if case let .failed(e) = epoll.add(fd, events, token) { Log.error("epoll_ctl: \(Sys.describe(e))") }
    }

    // MARK: The loop

    func run() -> Int32 {
        var events = [apus_event](repeating: apus_event(), count: 256)
        while !stopNow {
            let n = epoll.wait(into: &events, timeoutMS: 250)
            for i in 0..<n {
                let data = events[i].data
                let fd = Int32(bitPattern: UInt32(truncatingIfNeeded: data))
                switch Token(rawValue: data >> 32) {
                case .listener: acceptClients(fd)
                case .client: if let c = clients[fd] { clientEvent(c, events[i].events) }
                case .node: if let c = links[fd] { nodeEvent(c, events[i].events) }
                case .udp: readSubscriptions()
                case .signal: handleSignals()
                case nil: break
                }
            }
            let now = Sys.now()
            if now - lastSweep >= 1 { sweep(now) }
            if draining && (clients.isEmpty || now >= drainDeadline) { break }
        }
        for c in Array(clients.values) { closeClient(c) }
        if case let .unix(path) = config.router.subscriptionServer { unlink(path) }
        for bind in config.binds { if case let .unix(path) = bind.address { unlink(path) } }
        if let pidfile = config.pidfile { unlink(pidfile) }
        Log.info("stopped")
        return 0
    }

    private func handleSignals() {
        for sig in SignalQueue.drain() {
            switch sig {
            case SIGTERM, SIGINT:
                guard !draining else { continue }
                Log.info("\(sig == SIGTERM ? "SIGTERM" : "SIGINT"): graceful shutdown (up to \(config.shutdownTimeout) s)")
                draining = true
                drainDeadline = Sys.now() + config.shutdownTimeout
                for fd in listeners.keys { Sys.close(fd) }
                listeners = [:]
                // Idle keep-alive connections close; one whose request is already in its
                // socket gets that request answered first (with Connection: close).
                for c in Array(clients.values) where c.phase == .waiting && !c.headStarted && c.input.isEmpty {
                    readClient(c)
                    if c.input.isEmpty { closeClient(c) } else { advance(c); if clients[c.fd] != nil { updateInterest(c) } }
                }
            case SIGQUIT:
                Log.info("SIGQUIT: immediate shutdown")
                stopNow = true
            default: break
            }
        }
    }

    /// Once a second: idle and late connections, and nodes that stopped announcing.
    private func sweep(_ now: Double) {
        lastSweep = now
        for (key, address) in table.expire(now: now) {
            Log.info("\(text(key)): node \(text(address)) dropped (no announcement for \(config.router.tolerance) s)")
        }
        for c in Array(clients.values) {
            if let link = c.node {
                if now >= link.deadline {
                    if !link.connected {
                        nodeFailed(c, link, reason: "no connection within \(Self.connectTimeout) s")
                    } else if !link.headDone && c.pendingOutput == 0 {
                        Log.warning("\(text(c.key)): node \(text(link.address)) sent no answer in \(Self.nodeTimeout) s")
                        endLink(c)
                        respond(c, 504, "Gateway Timeout", "the node did not answer in time\n", close: true)
                    } else {
                        endLink(c)
                        c.keepAlive = false
                        finishRequest(c)
                    }
                }
            } else if c.phase != .proxying, now >= c.deadline {
                closeClient(c)
            }
        }
    }

    // MARK: Clients

    private func acceptClients(_ listener: Int32) {
        guard let serverPort = listeners[listener] else { return }
        for _ in 0..<64 {
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let fd = withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { apus_accept(listener, $0, &length) }
            }
            if fd < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return }
                Log.warning("accept: \(Sys.describe(errno))", budget: &budget, now: Sys.now())
                return
            }
            _ = apus_tcp_nodelay(fd)
            let (address, port) = peer(&storage)
            let c = Client(fd: fd, connection: ProxiedConnection(remoteAddress: address, remotePort: port, serverPort: serverPort),
                           deadline: Sys.now() + config.limits.keepAliveTimeout.clampedIdle)
            clients[fd] = c
            c.interest = Epoll.readable
            add(fd, c.interest, Self.token(.client, fd))
        }
    }

    private func clientEvent(_ c: Client, _ events: UInt32) {
        if events & (Epoll.writable | Epoll.error | Epoll.hangup) != 0 && c.pendingOutput > 0 {
            flushClient(c)
            if clients[c.fd] == nil { return }
        }
        if events & (Epoll.hangup | Epoll.error) != 0 && c.peerClosed {
            // gone both ways (or reset): nothing more can reach it
            closeClient(c)
            return
        }
        if events & (Epoll.readable | Epoll.hangup | Epoll.error) != 0 {
            readClient(c)
            if clients[c.fd] == nil { return }
            advance(c)
        }
        if clients[c.fd] != nil { updateInterest(c) }
    }

    private func readClient(_ c: Client) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while c.input.count < config.limits.maxHeaderBytes + 65536 {
            let r = buffer.withUnsafeMutableBytes { b in Sys.call { recv(c.fd, b.baseAddress, b.count, 0) } }
            switch r {
            case let .done(n) where n > 0: c.input += buffer[0..<n]
            case .done, .failed: c.peerClosed = true; return
            case .wouldBlock: return
            }
        }
    }

    /// Moves the client's request along with what is in its buffer.
    private func advance(_ c: Client) {
        switch c.phase {
        case .waiting:
            if c.input.isEmpty {
                if c.peerClosed { closeClient(c) }
                return
            }
            let result = c.input.withUnsafeBytes { parser.parseHead($0, into: &c.head) }
            switch result {
            case .incomplete:
                if c.peerClosed { closeClient(c); return }
                if !c.headStarted {
                    c.headStarted = true
                    c.deadline = Sys.now() + config.limits.headTimeout
                }
            case let .failure(e):
                Log.warning("\(text(c.connection.remoteAddress)): refused request: \(e.status)", budget: &budget, now: Sys.now())
                respond(c, e.status, e.reasonPhrase, "\(e.reasonPhrase)\n", close: true)
            case .complete:
                startRequest(c)
            }
        case .chunkedBody:
            guard var decoder = c.decoder else { return }
            var body = c.body
            let result = c.input.withUnsafeBytes { input in decoder.decode(input) { body += $0 } }
            c.decoder = decoder
            c.body = body
            switch result {
            case .needMore:
                c.input.removeAll()
                if body.count > config.limits.bodyMemoryBytes {
                    respond(c, 413, "Content Too Large", "a chunked body larger than --body-buffer-size\n", close: true)
                } else if c.peerClosed {
                    closeClient(c)
                }
            case let .done(consumed):
                c.input.removeFirst(consumed)
                dispatch(c, body: body)
            case let .failure(e):
                respond(c, e.status, e.reasonPhrase, "\(e.reasonPhrase)\n", close: true)
            }
        case .proxying:
            guard let link = c.node, c.bodyToNode > 0, !c.input.isEmpty else {
                if c.peerClosed && c.bodyToNode > 0 { endLink(c); closeClient(c) }
                return
            }
            let k = min(c.bodyToNode, c.input.count)
            link.request += c.input[0..<k]
            c.input.removeFirst(k)
            c.bodyToNode -= k
            if link.connected { flushNode(c, link) }
        case .closing:
            c.input.removeAll()
        }
    }

    private func startRequest(_ c: Client) {
        let head = c.head
        c.isHEAD = head.isHEAD
        c.versionMinor = head.versionMinor
        c.keepAlive = head.keepAlive && config.limits.keepAliveTimeout > 0 && !draining
        c.key = c.input.withUnsafeBytes { b in requestHost(b, head).map { Array(b[$0]) } } ?? []
        c.deadline = Sys.now() + config.limits.bodyTimeout.orHead(config.limits.headTimeout)
        switch head.framing {
        case .chunked:
            c.headBytes = Array(c.input[0..<head.headLength])
            c.input.removeFirst(head.headLength)
            c.decoder = ChunkedDecoder(maxBodyBytes: config.limits.maxBodyBytes)
            c.body = []
            c.phase = .chunkedBody
            if head.expectContinue { c.output += Array("HTTP/1.1 100 Continue\r\n\r\n".utf8) }
            advance(c)
        case let .contentLength(n):
            dispatch(c, body: nil, contentLength: n)
        case .none:
            dispatch(c, body: nil, contentLength: 0)
        }
    }

    /// The head is parsed (and a chunked body read): build the packet, pick a node, connect.
    /// `body`: a de-chunked body; nil when the body (Content-Length) follows the head in
    /// `c.input` and from the client.
    private func dispatch(_ c: Client, body: [UInt8]?, contentLength: Int = 0) {
        let length = body?.count ?? contentLength
        guard !c.key.isEmpty else {
            respond(c, 503, "Service Unavailable", "no Host in the request\n", close: body == nil && length > 0)
            return
        }
        // The packet is made while the head is still at the start of the buffer.
        let packet = (body == nil ? c.input : c.headBytes).withUnsafeBytes { b in
            uwsgiPacket(b, c.head, contentLength: length, connection: c.connection)
        }
        guard var request = packet else {
            respond(c, 431, "Request Header Fields Too Large", "the request does not fit in a uwsgi packet\n", close: true)
            return
        }
        if let body {
            request += body
            c.body = []
            c.headBytes = []
            c.decoder = nil
            c.bodyToNode = 0
        } else {
            let expect = c.head.expectContinue
            c.input.removeFirst(c.head.headLength)
            let k = min(length, c.input.count)
            request += c.input[0..<k]
            c.input.removeFirst(k)
            c.bodyToNode = length - k
            if expect && c.bodyToNode > 0 { c.output += Array("HTTP/1.1 100 Continue\r\n\r\n".utf8) }
        }
        c.phase = .proxying
        connect(c, request: request, tried: [])
    }

    // MARK: Nodes

    /// Connects to the next node for `c.key` not in `tried`; a node that refuses is dropped
    /// and the next one tried, since nothing of the request has reached it.
    private func connect(_ c: Client, request: [UInt8], tried: [[UInt8]]) {
        var tried = tried
        let now = Sys.now()
        while let node = table.pick(key: c.key, excluding: tried, now: now) {
            tried.append(node.address)
            var packet = request
            packet[0] = node.modifier1
            packet[3] = node.modifier2
            switch openConnection(node.target) {
            case let .failure(e):
                table.release(key: c.key, address: node.address)
                table.remove(key: c.key, address: node.address)
                Log.warning("\(text(c.key)): node \(text(node.address)) dropped: cannot connect: \(Sys.describe(e.errno))", budget: &nodeBudget, now: now)
                continue
            case let .success((fd, connected)):
                let link = Link(fd: fd, address: node.address, request: packet, deadline: now + Self.connectTimeout)
                link.connected = connected
                if c.bodyToNode == 0 && packet.count <= Self.replayLimit { link.replay = packet }
                link.tried = tried
                c.node = link
                links[fd] = c
                link.interest = Epoll.writable
                add(fd, link.interest, Self.token(.node, fd))
                if connected { link.deadline = now + Self.nodeTimeout; flushNode(c, link) }
                updateInterest(c)
                return
            }
        }
        let reason = tried.isEmpty ? "no node for this Host" : "no node of this Host could be reached"
        Log.warning("\(text(c.key)): \(reason) (503)", budget: &budget, now: now)
        respond(c, 503, "Service Unavailable", "\(reason): \(text(c.key))\n", close: c.bodyToNode > 0)
    }

    private func nodeEvent(_ c: Client, _ events: UInt32) {
        guard let link = c.node else { return }
        if !link.connected {
            var err: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(link.fd, SOL_SOCKET, SO_ERROR, &err, &len)
            if err != 0 {
                nodeFailed(c, link, reason: Sys.describe(err))
                return
            }
            guard events & Epoll.writable != 0 else { return }
            link.connected = true
            link.deadline = Sys.now() + Self.nodeTimeout
        }
        if events & Epoll.writable != 0 && link.pendingRequest > 0 { flushNode(c, link) }
        if c.node === link, events & (Epoll.readable | Epoll.hangup | Epoll.error) != 0 { readNode(c, link) }
        if clients[c.fd] != nil { updateInterest(c) }
    }

    /// The connection to the node failed before any byte of the request reached it: drop
    /// the node and offer the request to the next one.
    private func nodeFailed(_ c: Client, _ link: Link, reason: String) {
        let tried = link.tried
        Log.warning("\(text(c.key)): node \(text(link.address)) dropped: cannot connect: \(reason)", budget: &nodeBudget, now: Sys.now())
        let request = link.request
        endLink(c)
        table.remove(key: c.key, address: link.address)
        connect(c, request: request, tried: tried)
        if clients[c.fd] != nil { updateInterest(c) }
    }

    private func flushNode(_ c: Client, _ link: Link) {
        while link.pendingRequest > 0 {
            let r = link.request.withUnsafeBytes { b in
                Sys.call { send(link.fd, b.baseAddress! + link.requestSent, link.pendingRequest, Int32(MSG_NOSIGNAL)) }
            }
            switch r {
            case let .done(n): link.requestSent += n
            case .wouldBlock: return
            case let .failed(e):
                // The node closed (it may have answered already: read what it sent).
                link.request = []
                link.requestSent = 0
                if e != EPIPE && e != ECONNRESET { Log.warning("\(text(c.key)): writing to node \(text(link.address)): \(Sys.describe(e))", budget: &nodeBudget, now: Sys.now()) }
                c.bodyToNode = 0
                c.keepAlive = false
                return
            }
        }
        link.request.removeAll(keepingCapacity: true)
        link.requestSent = 0
    }

    private func readNode(_ c: Client, _ link: Link) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while c.pendingOutput < Self.highWater, c.node === link {
            let r = buffer.withUnsafeMutableBytes { b in Sys.call { recv(link.fd, b.baseAddress, b.count, 0) } }
            switch r {
            case let .done(n) where n > 0:
                link.deadline = Sys.now() + Self.nodeTimeout
                nodeBytes(c, link, buffer[0..<n])
            case .done: nodeClosed(c, link, reset: false); return
            case .failed: nodeClosed(c, link, reset: true); return
            case .wouldBlock: return
            }
        }
    }

    private func nodeBytes(_ c: Client, _ link: Link, _ bytes: ArraySlice<UInt8>) {
        var body = bytes
        if !link.headDone {
            link.response += bytes
            let parsed = link.response.withUnsafeBytes { parseNodeResponseHead($0) }
            switch parsed {
            case .incomplete: return
            case let .failure(reason):
                Log.warning("\(text(c.key)): node \(text(link.address)): \(reason) (502)", budget: &nodeBudget, now: Sys.now())
                endLink(c)
                respond(c, 502, "Bad Gateway", "the node sent an invalid response\n", close: true)
                return
            case let .complete(head):
                let (bytes, framing, keep) = link.response.withUnsafeBytes {
                    clientResponseHead($0, head, requestIsHEAD: c.isHEAD, requestVersionMinor: c.versionMinor,
                                       keepAlive: c.keepAlive && c.bodyToNode == 0 && !draining)
                }
                c.output += bytes
                c.keepAlive = keep
                link.headDone = true
                link.framing = framing
                if case let .contentLength(n) = framing { link.remaining = n }
                body = link.response[head.headLength...]
                link.response = []
                if framing == .none || framing == .contentLength(0) { endLink(c); finishRequest(c); return }
            }
        }
        guard !body.isEmpty else { return }
        switch link.framing {
        case .none: break
        case .contentLength:
            let k = min(link.remaining, body.count)
            c.output += body.prefix(k)
            link.remaining -= k
            if link.remaining == 0 { endLink(c); finishRequest(c) }
        case .chunkedAsIs, .untilClose:
            c.output += body
        case .rechunk:
            c.output += Array(String(body.count, radix: 16).utf8) + [0x0D, 0x0A]
            c.output += body
            c.output += [0x0D, 0x0A]
        }
    }

    private func nodeClosed(_ c: Client, _ link: Link, reset: Bool) {
        let tried = link.tried
        endLink(c)
        guard link.headDone else {
            // A node that unsubscribed closes its listening socket once it has accepted what
            // was queued; a connection that reached the queue just after that is closed
            // unread. The unsubscribe was sent before, so read the datagrams waiting: if the
            // node is gone from the table and sent nothing, it never saw the request, which
            // goes to another node. (A node that dies, still subscribed, costs its requests.)
            if link.response.isEmpty, let replay = link.replay {
                readSubscriptions()
                if !table.nodes(c.key).contains(where: { $0.address == link.address }) {
                    Log.info("\(text(c.key)): node \(text(link.address)) closed a request unread after it unsubscribed: sent to another node")
                    connect(c, request: replay, tried: tried)
                    return
                }
            }
            // A node that closes without answering (killed, crashed) is dropped while its key
            // has other nodes, so the next requests go to them; its next announcement adds it
            // again. The last node of a key stays: dropping it would only turn 502s into 503s.
            var dropped = ""
            if table.nodes(c.key).count > 1, table.remove(key: c.key, address: link.address) {
                dropped = "; dropped until it announces itself again"
            }
            Log.warning("\(text(c.key)): node \(text(link.address)) closed without an answer (502)\(dropped)", budget: &nodeBudget, now: Sys.now())
            respond(c, 502, "Bad Gateway", "the node closed the connection without an answer\n", close: true)
            return
        }
        switch link.framing {
        case .rechunk where !reset:
            c.output += Array("0\r\n\r\n".utf8)
        case .none:
            break
        case .untilClose where !reset:
            break
        default:
            c.keepAlive = false  // a body cut short, or a chunked one passed as it is
        }
        finishRequest(c)
    }

    /// Closes the node connection of `c` (the request's node work is over).
    private func endLink(_ c: Client) {
        guard let link = c.node else { return }
        table.release(key: c.key, address: link.address)
        links[link.fd] = nil
        Sys.close(link.fd)
        c.node = nil
    }

    /// The response is all in `c.output`: keep the connection for the next request, or close
    /// it once the output is written.
    private func finishRequest(_ c: Client) {
        if c.bodyToNode > 0 || draining { c.keepAlive = false }
        if !c.keepAlive {
            c.phase = .closing
            c.deadline = Sys.now() + Self.sendTimeout
            flushClient(c)
            return
        }
        c.phase = .waiting
        c.headStarted = false
        c.deadline = Sys.now() + config.limits.keepAliveTimeout
        flushClient(c)
        if clients[c.fd] != nil, !c.input.isEmpty { advance(c) }
    }

    /// A short answer of the router's own.
    private func respond(_ c: Client, _ status: Int, _ reason: String, _ body: String, close: Bool) {
        let keep = !close && c.keepAlive && !draining
        var head = "HTTP/1.1 \(status) \(reason)\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\n"
        head += keep ? (c.versionMinor == 0 ? "Connection: keep-alive\r\n" : "") : "Connection: close\r\n"
        c.output += Array((head + "\r\n" + (c.isHEAD ? "" : body)).utf8)
        c.keepAlive = keep
        if c.phase == .waiting || c.phase == .chunkedBody {
            // refused before any node: what the client sent after the head is not read
            c.keepAlive = false
            c.input.removeAll()
        }
        finishRequest(c)
    }

    private func flushClient(_ c: Client) {
        while c.pendingOutput > 0 {
            let r = c.output.withUnsafeBytes { b in
                Sys.call { send(c.fd, b.baseAddress! + c.outputSent, c.pendingOutput, Int32(MSG_NOSIGNAL)) }
            }
            switch r {
            case let .done(n):
                c.outputSent += n
                // a client that reads keeps its connection and its node's
                let now = Sys.now()
                c.deadline = max(c.deadline, now + Self.sendTimeout)
                c.node?.deadline = max(c.node?.deadline ?? 0, now + Self.nodeTimeout)
            case .wouldBlock:
                updateInterest(c)
                return
            case .failed:
                endLink(c)
                closeClient(c)
                return
            }
        }
        c.output.removeAll(keepingCapacity: c.output.capacity <= 1 << 20)
        c.outputSent = 0
        if c.phase == .closing { closeClient(c); return }
        if let link = c.node, link.connected { readNode(c, link) }
        if clients[c.fd] != nil { updateInterest(c) }
    }

    private func closeClient(_ c: Client) {
        endLink(c)
        clients[c.fd] = nil
        Sys.close(c.fd)
    }

    /// Level-triggered interest: read the client when its next bytes are wanted, write when
    /// output waits; read the node while the client keeps up, write while the request waits.
    private func updateInterest(_ c: Client) {
        guard clients[c.fd] != nil else { return }
        var want: UInt32 = 0
        switch c.phase {
        case .waiting, .chunkedBody: if !c.peerClosed { want |= Epoll.readable }
        case .proxying:
            if !c.peerClosed, c.bodyToNode > 0, (c.node?.pendingRequest ?? 0) < Self.highWater { want |= Epoll.readable }
        case .closing: break
        }
        if c.pendingOutput > 0 { want |= Epoll.writable }
        if want != c.interest {
            c.interest = want
            _ = epoll.modify(c.fd, want, Self.token(.client, c.fd))
        }
        if let link = c.node {
            var w: UInt32 = 0
            if !link.connected || link.pendingRequest > 0 { w |= Epoll.writable }
            if link.connected && c.pendingOutput < Self.highWater { w |= Epoll.readable }
            if w != link.interest {
                link.interest = w
                _ = epoll.modify(link.fd, w, Self.token(.node, link.fd))
            }
        }
    }

    // MARK: Subscriptions

    private func readSubscriptions() {
        var buffer = [UInt8](repeating: 0, count: SubscriptionPacket.maxPacketBytes + 1)
        for _ in 0..<256 {
            let r = buffer.withUnsafeMutableBytes { b in Sys.call { recv(udpFD, b.baseAddress, b.count, 0) } }
            guard case let .done(n) = r else { return }
            let now = Sys.now()
            let parsed = buffer.withUnsafeBytes { SubscriptionPacket.parse(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            switch parsed {
            case let .failure(e):
                Log.warning("subscription packet refused: \(e.logDescription)", budget: &budget, now: now)
            case let .success(packet):
                let change = table.apply(packet, now: now)
                let what = "\(text(packet.key)): node \(text(packet.address))"
                switch change {
                case .added: Log.info("\(what) subscribed")
                case .removed: Log.info("\(what) unsubscribed")
                case .refreshed: break
                case let .ignored(reason): Log.warning("\(what): packet ignored: \(reason)", budget: &budget, now: now)
                }
            }
        }
    }
}

// MARK: - Helpers

/// Bytes for a log line: visible ASCII kept, anything else as `\xNN`.
func text(_ bytes: [UInt8]) -> String {
    var s = ""
    for b in bytes.prefix(255) {
        if b >= 0x20 && b < 0x7F && b != 0x5C { s.unicodeScalars.append(Unicode.Scalar(b)) }
        else { s += "\\x" + String(b, radix: 16) }
    }
    return s
}

extension Double {
    /// An idle deadline for a new connection: the keep-alive timeout, or 5 s with keep-alive off.
    var clampedIdle: Double { self > 0 ? self : 5 }
}

extension Optional where Wrapped == Double {
    func orHead(_ head: Double) -> Double { self ?? head }
}

/// The peer's address and port as text, from accept's sockaddr.
func peer(_ storage: inout sockaddr_storage) -> ([UInt8], [UInt8]) {
    var host = [CChar](repeating: 0, count: 64)
    var port = 0
    switch Int32(storage.ss_family) {
    case AF_INET:
        withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                var a = sin.pointee.sin_addr
                inet_ntop(AF_INET, &a, &host, 64)
                port = Int(UInt16(bigEndian: sin.pointee.sin_port))
            }
        }
    case AF_INET6:
        withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin in
                var a = sin.pointee.sin6_addr
                inet_ntop(AF_INET6, &a, &host, 64)
                port = Int(UInt16(bigEndian: sin.pointee.sin6_port))
            }
        }
    default:
        return ([], [])
    }
    var portText: [UInt8] = []
    appendDecimal(port, to: &portText)
    return (host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, portText)
}

/// A non-blocking connection to a node: (fd, already connected) or the errno.
func openConnection(_ target: NodeAddress) -> Result<(Int32, Bool), SocketError> {
    let flags = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
    func attempt(_ family: Int32, _ address: UnsafeRawBufferPointer) -> Result<(Int32, Bool), SocketError> {
        let fd = socket(family, flags, 0)
        guard fd >= 0 else { return .failure(SocketError(errno)) }
        if family != AF_UNIX { _ = apus_tcp_nodelay(fd) }
        let rc = connect(fd, address.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(address.count))
        if rc == 0 { return .success((fd, true)) }
        let e = errno
        if e == EINPROGRESS || e == EINTR { return .success((fd, false)) }
        Sys.close(fd)
        return .failure(SocketError(e))
    }
    switch target {
    case let .tcp(bytes, port) where bytes.count == 4:
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = UInt16(port).bigEndian
        withUnsafeMutableBytes(of: &sa.sin_addr) { for i in 0..<4 { $0[i] = bytes[i] } }
        return withUnsafeBytes(of: &sa) { attempt(AF_INET, $0) }
    case let .tcp(bytes, port):
        var sa = sockaddr_in6()
        sa.sin6_family = sa_family_t(AF_INET6)
        sa.sin6_port = UInt16(port).bigEndian
        withUnsafeMutableBytes(of: &sa.sin6_addr) { for i in 0..<min(16, bytes.count) { $0[i] = bytes[i] } }
        return withUnsafeBytes(of: &sa) { attempt(AF_INET6, $0) }
    case let .unix(path):
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        let p = Array(path.utf8)
        guard p.count < MemoryLayout.size(ofValue: sa.sun_path) else { return .failure(SocketError(ENAMETOOLONG)) }
        withUnsafeMutableBytes(of: &sa.sun_path) { for (i, b) in p.enumerated() { $0[i] = b } }
        return withUnsafeBytes(of: &sa) { attempt(AF_UNIX, $0) }
    }
}

struct SocketError: Error { let errno: Int32; init(_ e: Int32) { errno = e } }

func openDatagram(_ address: DatagramAddress) -> Result<Int32, DatagramFailure> {
    func bound(_ family: Int32, _ sa: UnsafeRawBufferPointer) -> Result<Int32, DatagramFailure> {
        let fd = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { return .failure(DatagramFailure(Sys.describe(errno))) }
        if bind(fd, sa.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(sa.count)) != 0 {
            let e = errno
            Sys.close(fd)
            return .failure(DatagramFailure("cannot bind: \(Sys.describe(e))"))
        }
        return .success(fd)
    }
    switch address {
    case let .inet(host, port) where host.contains(":"):
        var sa = sockaddr_in6()
        sa.sin6_family = sa_family_t(AF_INET6)
        sa.sin6_port = UInt16(port).bigEndian
        guard inet_pton(AF_INET6, host, &sa.sin6_addr) == 1 else { return .failure(DatagramFailure("invalid address")) }
        return withUnsafeBytes(of: &sa) { bound(AF_INET6, $0) }
    case let .inet(host, port):
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = UInt16(port).bigEndian
        guard inet_pton(AF_INET, host, &sa.sin_addr) == 1 else { return .failure(DatagramFailure("invalid address")) }
        return withUnsafeBytes(of: &sa) { bound(AF_INET, $0) }
    case let .unix(path):
        // a socket left by an earlier run is replaced; any other file is not touched
        var st = stat()
        if lstat(path, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFSOCK else { return .failure(DatagramFailure("\(path) exists and is not a socket")) }
            unlink(path)
        }
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        let p = Array(path.utf8)
        guard p.count < MemoryLayout.size(ofValue: sa.sun_path) else { return .failure(DatagramFailure("path too long")) }
        withUnsafeMutableBytes(of: &sa.sun_path) { for (i, b) in p.enumerated() { $0[i] = b } }
        return withUnsafeBytes(of: &sa) { bound(AF_UNIX, $0) }
    }
}

struct DatagramFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
