#if canImport(Glibc)
import Glibc
#endif
import ApusObserve
import ApusProtocols
import ApusPython
import ApusSys

/// Reading requests: carrying out what each connection's machine says, running the app,
/// and going on after it.
extension Worker {
    /// The socket is readable (`hangup`: the event also reported the peer's hang-up).
    func readable(_ conn: Connection, now t: Double, hangup: Bool = false) {
        switch conn.machine.readable(hangup: hangup) {
        case .later:
            return
        case .discard:
            discardInput(conn)
        case let .read(toEnd):
            let before = conn.buffered
            let open = conn.fill(toEnd: toEnd)
            conn.machine.received(before: before, after: conn.buffered, now: t)
            if !open && conn.buffered == 0 {
                closeAfterPending(conn)
                return
            }
            process(conn, now: t, peerClosed: !open)
            if connections[Int(conn.fd)] === conn { conn.releaseBufferIfIdle() }
        }
    }

    /// Moves the connection forward with the bytes it has: parse, read the body, run the app.
    func process(_ conn: Connection, now t: Double, peerClosed: Bool = false) {
        let memoryLimit = rules.bodyMemoryBytes
        while true {
            let action = conn.machine.step(conn.bytes, pending: conn.pendingBytes, peerClosed: peerClosed,
                                           draining: draining, now: t, rules: rules) { piece in
                conn.body.append(piece, memoryLimit: memoryLimit)
            }
            switch action {
            case .readMore, .wait:
                return
            case .writePending:
                writePending(conn)
                if conn.machine.writeBlocked || connections[Int(conn.fd)] !== conn { return }
            case let .proxyAccepted(proxy):
                if !proxy.isLocal, let source = proxy.source {
                    conn.peerAddress = Array(formatIPAddress(source).utf8)
                    conn.peerPort = proxy.sourcePort ?? 0
                    conn.trustedPeer = conn.peerAddress.withUnsafeBytes { trustedProxies.trusts($0) }
                }
                conn.consume(proxy.length)
            case .sendContinue:
                conn.queueContinue()
                hold(conn)
            case let .dropBodyBytes(count):
                conn.remove(count: count, after: conn.machine.head.headLength)
            case let .dispatch(request):
                if staticFiles != nil, let reusable = serveStatic(conn, request, now: t) {
                    // Answered by the loop: on to the next request, as after the app.
                    switch conn.machine.appFinished(reusable: reusable, now: t) {
                    case .close:
                        closeAfterPending(conn)
                        return
                    case let .next(consumed, _):
                        conn.consume(consumed)
                        hold(conn)
                        continue
                    }
                }
                dispatch(conn, request)
                return  // pipelined bytes wait until the app is done with this request
            case let .reject(error):
                reject(conn, error)
                return
            case let .refuseProxy(why):
                Log.warning("PROXY protocol header from \(conn.peerDescription) rejected: \(why)", budget: &clientErrorLog, now: t)
                closeConnection(conn)
                return
            case let .refusePacket(error):
                Log.warning("bad uwsgi packet from \(conn.peerDescription): \(error.logDescription)", budget: &clientErrorLog, now: t)
                closeConnection(conn)
                return
            case .closeAfterPending:
                closeAfterPending(conn)
                return
            case .close:
                closeConnection(conn)
                return
            }
        }
    }

    /// Queues a complete request for the app (see `serve`).
    private func dispatch(_ conn: Connection, _ request: ConnectionMachine.Request) {
        let headLength = conn.machine.head.headLength
        var body = WSGIBody.empty
        var bodyInBuffer = 0
        var chunkedMemory = false
        switch request.body {
        case .none:
            break
        case let .inBuffer(count):
            body = .memory(UnsafeRawBufferPointer(rebasing: conn.bytes[headLength..<(headLength + count)]))
            bodyInBuffer = count
        case .sink:
            let (taken, memory) = conn.body.take()
            if case .file = taken {
                body = taken
            } else {
                conn.body.memory = memory
                chunkedMemory = true
            }
        }
        inFlight += 1
        notFresh(conn)
        ready.append(AppJob(conn: conn, body: body, contentLength: request.contentLength, bodyInBuffer: bodyInBuffer,
                            chunkedMemory: chunkedMemory))
    }

    /// After the app answered: next request, or close.
    func finish(_ job: AppJob, keepAlive: Bool, now t: Double) {
        let conn = job.conn
        inFlight -= 1
        inApp -= 1
        if crew != nil && !accepting && !draining && inFlight >= config.threads { acceptInTurn(t) }
        // A body in a file: the app's stream owned and closed the descriptor.
        conn.body.reset()
        switch conn.machine.appFinished(reusable: keepAlive, now: t) {
        case .close:
            closeAfterPending(conn)
        case let .next(consumed, read):
            conn.consume(consumed)
            conn.releaseBufferIfIdle()
            if !conn.pendingOut.isEmpty { hold(conn) }
            if !conn.armed { watch(conn, Self.connectionEvents) }
            if case let .read(toEnd)? = read {
                readable(conn, now: t, hangup: toEnd)
            } else if conn.buffered > 0 {
                process(conn, now: t)
            }
        }
    }

    /// A malformed or oversized request: a short answer, then the connection closes. The
    /// machine is `.discarding`: what the client still sends is dropped for a moment.
    private func reject(_ conn: Connection, _ error: HTTPRequestError) {
        if case let .badRequest(why) = error {
            Log.warning("bad request from \(conn.peerDescription): \(why)", budget: &clientErrorLog, now: Sys.now())
        }
        // Rare, and the order on the wire must hold: what is pending goes first. A client
        // that reads none of it is closed on.
        let reason = error.reasonPhrase
        var bytes = plainResponse(status: error.status, reason: reason, text: "\(error.status) \(reason)\n")
        // Between the requests of a batch the thread that has the loop holds the GIL: a wait
        // here must not hold back the app's other threads.
        let waiting: SocketIO.Waiting = { [loopRunner] wait in
            guard let thread = loopRunner?.thread, thread.holdsGIL else { return wait() }
            return thread.withoutGIL(wait)
        }
        guard conn.writePendingBlocking(timeout: 5, waiting: waiting),
              bytes.withUnsafeMutableBytes({ SocketIO.writeAll(conn.fd, UnsafeRawBufferPointer($0), timeout: 1, waiting: waiting) }) else {
            closeConnection(conn)
            return
        }
        // Half-close and drop what the client still sends: closing with unread bytes would
        // reset the connection and could destroy the answer in flight.
        if shutdown(conn.fd, Int32(SHUT_WR)) != 0 {
            closeConnection(conn)  // the peer is gone
            return
        }
        conn.clear()
        discardInput(conn)
    }

    /// Reads and drops what the client sends after an error answer, until it closes.
    private func discardInput(_ conn: Connection) {
        conn.clear()
        conn.reserve(ReadBuffers.size)
        while true {
            switch Sys.call({ recv(conn.fd, conn.buffer, conn.capacity, 0) }) {
            case let .done(n) where n > 0:
                continue
            case .wouldBlock:
                return
            case .done, .failed:
                closeConnection(conn)
                return
            }
        }
    }
}
