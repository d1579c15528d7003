#if canImport(Glibc)
import Glibc
#endif
import CApusSys
import ApusConfig
import ApusObserve
import ApusSys

/// Accepting connections and balancing them across the workers that share the listeners.
extension Worker {
    /// Whether this worker has a thread for one more request (with app threads: the requests
    /// waiting for the app or in it, and the fresh connections, leave one free), is under its
    /// connection cap, holds no more than its share of connections, and is not pausing
    /// after running out of descriptors.
    func wantsConnections() -> Bool {
        (crew == nil || inFlight + fresh.count < config.threads) && mayTakeConnection()
    }

    /// Everything `wantsConnections` asks but a free app thread.
    func mayTakeConnection() -> Bool {
        liveConnections < maxConnections
            && spec.tally.mayAccept(slot: Int(spec.slot), mine: liveConnections)
            && (acceptPausedUntil == 0 || Sys.now() >= acceptPausedUntil)
    }

    /// A listener is readable: take one connection, unless this worker stopped wanting them
    /// during the batch of events (see `updateAccepting`).
    func listenerReady(_ index: Int, now t: Double) {
        if wantsConnections() {
            acceptOne(listeners[index], now: t)
        } else {
            stopAccepting()
        }
    }

    func stopAccepting() {
        guard accepting else { return }
        accepting = false
        for l in listeners { stopWatching(l) }
    }

    /// EPOLLEXCLUSIVE wakes one sleeping worker per new connection, so a worker that wants no
    /// connection (at its cap, over its share, no thread free) must not be in the listeners'
    /// wait queue: woken, it would leave the connection in the backlog and no other worker
    /// would hear of it. This runs when a connection opens or closes and before every
    /// epoll_wait. Requests queued during a batch of events are run before the poll, so a
    /// worker whose app never waits is never short of threads there, and under keep-alive
    /// load its listeners stay in the set.
    func updateAccepting() {
        if draining || takingBacklog { return }
        let want = wantsConnections()
        if want == accepting { return }
        if !want {
            stopAccepting()
            return
        }
        if crew != nil {
            // An app thread came free: take what already waits in the backlog. Under load
            // this keeps the listeners out of the epoll set instead of adding and deleting
            // them once per request; only an empty backlog puts them back.
            takingBacklog = true
            var took = true
            while took && wantsConnections() {
                took = false
                for l in listeners where wantsConnections() {
                    if acceptOne(l, now: Sys.now()) { took = true }
                }
            }
            takingBacklog = false
            if !wantsConnections() { return }
        }
        accepting = true
        for (i, l) in listeners.enumerated() {
            // Fails only without kernel memory (ENOMEM) or over fs.epoll.max_user_watches:
            // this worker cannot serve, and the master starts another.
            if case let .failed(e) = poller.add(l.fd, Epoll.readable | Epoll.exclusive, EventToken.listener(i).raw) {
                fatalError("cannot watch a listening socket: \(Sys.describe(e))")
            }
        }
    }

    /// Takes a listener out of the epoll set (it is in it: removing cannot fail).
    func stopWatching(_ listener: Listener) {
        if case let .failed(e) = poller.remove(listener.fd) {
            preconditionFailure("epoll_ctl(DEL) of a watched listener failed: \(Sys.describe(e))")
        }
    }

    /// Takes one connection per wake-up, so the other workers get their share. True when a
    /// connection left the queue (served, refused, or one the client gave up on).
    @discardableResult
    func acceptOne(_ listener: Listener, now t: Double) -> Bool {
        var addr = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let accepted = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in Sys.call { apus_accept(listener.fd, sa, &len) } }
        }
        let fd: Int32
        switch accepted {
        case let .done(n):
            fd = Int32(n)
        case .wouldBlock:
            return false  // another worker took it
        case let .failed(e):
            return acceptFailed(e, t)
        }
        if acceptPausedUntil != 0 {
            acceptPausedUntil = 0
            acceptFailureLogged = false
        }
        let (host, port) = listener.isUnix ? ([], 0) : describe(addr)
        if listener.proxyProtocol && !host.isEmpty && !host.withUnsafeBytes({ config.proxyAllowed.trusts($0) }) {
            // A PROXY header says who the client is: believed only from the listed
            // balancers (--proxy-allow-ips), else anyone could claim any address.
            Log.warning("connection from \(String(decoding: host, as: UTF8.self)) refused: not in --proxy-allow-ips, so its PROXY header would not be believed",
                        budget: &clientErrorLog, now: t)
            Sys.close(fd)
            return true
        }
        if !listener.isUnix, case .failed = Sys.call({ apus_tcp_nodelay(fd) }) {
            // Only a connection already reset makes TCP_NODELAY fail: drop it.
            Sys.close(fd)
            return true
        }
        let conn = Connection(fd: fd, listener: listener, peerAddress: host, peerPort: port, buffers: readBuffers, now: t)
        conn.trustedPeer = host.withUnsafeBytes { trustedProxies.trusts($0) }
        if crew != nil && !draining {
            conn.isFresh = true
            fresh.append(conn)
        }
        register(conn)
        // The request is often here already (nginx writes it as soon as it connects): read
        // it now. The socket joins the epoll set only when the connection has to wait.
        let open = conn.fill()
        if conn.buffered > 0 {
            process(conn, now: t, peerClosed: !open)
        } else if !open {
            closeConnection(conn)
            return true
        }
        if connections[Int(fd)] === conn {
            conn.releaseBufferIfIdle()
            if !conn.armed && !conn.machine.isInApp && conn.machine.state != .closing {
                watch(conn, Self.connectionEvents)  // else armed when the app is done, or to write
            }
        }
        return true
    }

    /// accept() failed. Out of descriptors (this process's or the system's) or kernel memory:
    /// take the listeners out of the epoll set for a moment and say so once per episode.
    /// True when the failed accept took a connection off the queue (one that failed before
    /// it was accepted), so the queue may hold more.
    func acceptFailed(_ error: Int32, _ t: Double) -> Bool {
        switch error {
        case EMFILE, ENFILE, ENOBUFS, ENOMEM:
            acceptPausedUntil = t + Self.acceptPause
            if !acceptFailureLogged {
                acceptFailureLogged = true
                let what = error == EMFILE ? "this worker's open-files limit" : error == ENFILE ? "the system's open-files limit" : "kernel memory"
                Log.warning("cannot accept connections: out of \(what) with \(liveConnections) open; new ones wait in the queue (or go to other workers) until some close. Raise the limit (ulimit -n) or lower --max-connections")
            }
            if !takingBacklog { stopAccepting() }
            return false
        case ECONNABORTED, EPROTO, ENETDOWN, ENOPROTOOPT, EHOSTDOWN, ENONET, EHOSTUNREACH, EOPNOTSUPP, ENETUNREACH, EPERM:
            return true  // the client gave up while queued, or its network failed (accept(2))
        default:
            return false
        }
    }

    /// Every app thread is busy and requests are queued: a finished request lets one
    /// connection in from the backlog, so that new connections take their turn in the queue
    /// with the keep-alive ones. Without this a worker accepts only when a thread is free, and
    /// the keep-alive clients' next requests always take the freed thread first: a health
    /// check or a new browser would wait for as long as the load lasts. The backlog is not
    /// empty only when no worker has a free thread, so taking from it here costs no balance.
    func acceptInTurn(_ t: Double) {
        guard mayTakeConnection() else { return }
        for l in listeners {
            if acceptOne(l, now: t) { return }
        }
    }

    /// Fresh connections past the grace period stop counting (see `fresh`).
    func expireFresh(_ t: Double) {
        let before = fresh.count
        fresh.removeAll { conn in
            if conn.isFresh && t - conn.machine.since < Self.freshGrace { return false }
            conn.isFresh = false
            return true
        }
        if fresh.count != before { updateAccepting() }
    }

    func notFresh(_ conn: Connection) {
        guard conn.isFresh else { return }
        conn.isFresh = false
        fresh.removeAll { $0 === conn }
    }

    func register(_ conn: Connection) {
        let fd = Int(conn.fd)
        if fd >= connections.count {
            connections.append(contentsOf: repeatElement(nil, count: fd - connections.count + 64))
        }
        connections[fd] = conn
        liveConnections += 1
        if !draining { spec.tally.set(Int(spec.slot), liveConnections) }
        updateAccepting()
    }
}

extension Listener {
    /// A listener for an inherited socket; SERVER_NAME and SERVER_PORT come from its address.
    convenience init(_ socket: BoundSocket, proxyProtocol: Bool) {
        switch socket.bind.address {
        case let .tcp(host, port):
            self.init(fd: socket.fd, proto: socket.bind.proto, proxyProtocol: proxyProtocol, isUnix: false,
                      serverName: host.isEmpty ? "0.0.0.0" : host, serverPort: Int(port))
        case .unix:
            self.init(fd: socket.fd, proto: socket.bind.proto, proxyProtocol: proxyProtocol, isUnix: true,
                      serverName: "localhost", serverPort: 0)
        case .fd:
            // Inherited: its address is whatever the parent bound.
            var addr = sockaddr_storage()
            var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let named = withUnsafeMutablePointer(to: &addr) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in Sys.call { getsockname(socket.fd, sa, &len) }.value != nil }
            }
            let family = Int32(addr.ss_family)
            if named && (family == AF_INET || family == AF_INET6) {
                let (host, port) = describe(addr)
                self.init(fd: socket.fd, proto: socket.bind.proto, proxyProtocol: proxyProtocol, isUnix: false,
                          serverName: String(decoding: host, as: UTF8.self), serverPort: port)
            } else {
                self.init(fd: socket.fd, proto: socket.bind.proto, proxyProtocol: proxyProtocol, isUnix: true,
                          serverName: "localhost", serverPort: 0)
            }
        }
    }
}

/// "127.0.0.1" (as bytes), 54321 for a peer address; empty and 0 for another family.
func describe(_ addr: sockaddr_storage) -> ([UInt8], Int) {
    var a = addr
    var host = [UInt8](repeating: 0, count: 64)
    var port: UInt16 = 0
    var known = true
    withUnsafePointer(to: &a) { p in
        if addr.ss_family == sa_family_t(AF_INET) {
            p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { s in
                var ina = s.pointee.sin_addr
                // Fails only for an unknown family or a short buffer, neither possible here.
                known = host.withUnsafeMutableBytes { inet_ntop(AF_INET, &ina, $0.baseAddress!.assumingMemoryBound(to: CChar.self), 64) } != nil
                port = UInt16(bigEndian: s.pointee.sin_port)
            }
        } else if addr.ss_family == sa_family_t(AF_INET6) {
            p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { s in
                var ina = s.pointee.sin6_addr
                known = host.withUnsafeMutableBytes { inet_ntop(AF_INET6, &ina, $0.baseAddress!.assumingMemoryBound(to: CChar.self), 64) } != nil
                port = UInt16(bigEndian: s.pointee.sin6_port)
            }
        }
    }
    if !known { host[0] = 0 }
    host.removeSubrange((host.firstIndex(of: 0) ?? 0)..<host.count)  // keeps the one allocation
    return (host, Int(port))
}
