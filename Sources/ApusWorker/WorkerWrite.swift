#if canImport(Glibc)
import Glibc
#endif
import ApusSys

/// Holding finished answers and writing them without blocking the loop.
extension Worker {
    /// Puts the connection in the epoll set, or changes what it waits for there. A
    /// connection the kernel cannot watch (no memory for it) is closed.
    func watch(_ conn: Connection, _ events: UInt32) {
        let token = EventToken.connection(conn.fd).raw
        let result = conn.armed ? poller.modify(conn.fd, events, token) : poller.add(conn.fd, events, token)
        if case .failed = result {
            closeConnection(conn)
            return
        }
        conn.armed = true
    }

    /// The answer is written at the end of the batch of events.
    func hold(_ conn: Connection) {
        guard !conn.isHeld && !conn.machine.writeBlocked else { return }
        conn.isHeld = true
        held.append(conn)
    }

    func writeHeld() {
        let batch = held
        held.removeAll(keepingCapacity: true)
        for conn in batch {
            conn.isHeld = false
            // A pipelined request may be in an app thread, which writes these bytes first.
            if conn.machine.isInApp { continue }
            if connections[Int(conn.fd)] === conn { writePending(conn) }
        }
    }

    /// Writes a connection's pending bytes without blocking. When the socket is full the
    /// connection waits for EPOLLOUT and reads no further requests until it drains.
    func writePending(_ conn: Connection) {
        // A static file's body follows: MSG_MORE lets the head leave in the body's first
        // segment rather than in a packet of its own.
        let flags = Int32(MSG_NOSIGNAL) | (conn.file != nil ? Int32(MSG_MORE) : 0)
        while conn.pendingSent < conn.pendingOut.count {
            let sent = conn.pendingOut.withUnsafeBytes { out in
                Sys.call { send(conn.fd, out.baseAddress! + conn.pendingSent, out.count - conn.pendingSent, flags) }
            }
            switch sent {
            case let .done(n) where n > 0:
                conn.pendingSent += n
            case .wouldBlock:
                if !conn.machine.writeBlocked {
                    conn.machine.writeStalled(now: Sys.now())
                    watch(conn, Epoll.writable | Epoll.edgeTriggered)
                }
                return
            case .done, .failed:
                closeConnection(conn)  // the peer is gone
                return
            }
        }
        conn.pendingOut.removeAll(keepingCapacity: conn.pendingOut.capacity <= 16384)
        conn.pendingSent = 0
        if conn.file != nil && !sendFileBody(conn) { return }
        switch conn.machine.writeDrained(now: Sys.now()) {
        case .none:
            break
        case .close:
            closeConnection(conn)
        case .resume:
            watch(conn, Self.connectionEvents)
            if conn.buffered > 0 && connections[Int(conn.fd)] === conn { process(conn, now: conn.machine.since) }
            if connections[Int(conn.fd)] === conn { conn.releaseBufferIfIdle() }
        }
    }

    /// Closes now, or once the pending answer is written.
    func closeAfterPending(_ conn: Connection) {
        conn.machine.closeAfterWrite()
        if conn.nothingPending {
            closeConnection(conn)
        } else {
            hold(conn)
        }
    }

    func closeConnection(_ conn: Connection) {
        conn.pendingOut = []
        conn.pendingSent = 0
        conn.closeFile()
        notFresh(conn)
        // close() takes the socket out of the epoll set: it is never shared with another
        // process (accepted after the fork, close-on-exec).
        connections[Int(conn.fd)] = nil
        liveConnections -= 1
        if !draining { spec.tally.set(Int(spec.slot), liveConnections) }
        if !accepting { updateAccepting() }
        conn.body.reset()
        conn.releaseBuffer()
        Sys.close(conn.fd)
    }
}
