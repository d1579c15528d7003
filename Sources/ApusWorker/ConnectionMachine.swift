import ApusProtocols

/// The protocol rules a worker applies to every connection: parsers, limits, timeouts.
/// Made once per worker and passed to each step of a `ConnectionMachine`.
struct ConnectionRules {
    var http = HTTPRequestParser()
    var uwsgi = UWSGIRequestParser()
    /// Bodies up to this size are read into the connection buffer; larger ones go through
    /// the body sink (memory, then a temporary file).
    var bodyMemoryBytes = 1 << 20
    var maxBodyBytes = 1 << 30
    var headTimeout = 60.0
    /// One deadline for a whole body (`--body-timeout`; the head timeout when unset).
    var bodyTimeout: Double? = nil
    var keepAliveTimeout = 5.0
    /// How long a response may wait for a client that does not read it.
    var sendTimeout = 30.0
    /// How long the bytes after an error answer are read and dropped.
    var discardTime = 2.0
    /// Pending response bytes past which pipelined requests wait for them to be written.
    var pendingLimit = 65536
    /// With app threads the answers go out before the next pipelined request is taken: an
    /// app thread would otherwise add to bytes the loop cannot write while it runs.
    var writeBeforeNextRequest = false
}

/// One connection's protocol state as a value: which part of a request it is reading, how
/// the body is framed, whether the connection stays open, what a deadline or a drain does
/// to it. The worker feeds it events (bytes read, the peer hung up, the app finished, a
/// write stalled or drained, time passed, a drain began) and carries out the actions it
/// returns (read more, dispatch, send 100, reject, write, close). It makes no system call
/// and touches no Python, so every rule is tested as values (Tests/ApusWorkerTests) and
/// fuzzed (the `connection` target of scripts/fuzz.sh). It depends on ApusProtocols only.
///
/// The received bytes stay in the connection's buffer; each step is given a view of them
/// from the first byte not yet consumed. Body bytes that do not stay in the buffer go to
/// the `body` sink the step is given.
struct ConnectionMachine {
    /// What the connection speaks: HTTP/1.x, or uwsgi packets from a front end.
    enum Wire: Equatable {
        case http
        case uwsgi
    }

    enum State: Equatable {
        /// `--proxy-protocol`: waiting for the PROXY header that comes before any request.
        case proxyHeader
        /// Waiting for (more of) a request head (HTTP, or a uwsgi packet's vars block).
        case head
        /// Reading a Content-Length body; `remaining` counts the bytes not yet received.
        case body(remaining: Int)
        /// Reading a chunked body.
        case chunked
        /// Handed to the app (on an app thread, or running now on the loop).
        case inApp
        /// The last response is pending; the connection closes once it is written.
        case closing
        /// An error answer went out; what the client still sends is read and dropped until
        /// it closes or `until` passes, so the answer is not lost to a reset.
        case discarding(until: Double)
    }

    /// Where the body of a dispatched request is.
    enum Body: Equatable {
        /// No body.
        case none
        /// `count` bytes in the buffer right after the head.
        case inBuffer(count: Int)
        /// Everything went through the body sink (a large or chunked body).
        case sink
    }

    /// A complete request for the app.
    struct Request: Equatable {
        var body: Body
        /// CONTENT_LENGTH: the framed length, or the de-chunked length for a sink body;
        /// nil for a request without a body.
        var contentLength: Int?
    }

    /// What the worker does next for this connection.
    enum Action: Equatable {
        /// Wait until the socket is readable.
        case readMore
        /// Nothing to do: the request is in the app, or the connection waits to close.
        case wait
        /// Write the pending answers first; step again once they are out.
        case writePending
        /// A PROXY header was read: take the client's address from it, drop `length` bytes,
        /// step again.
        case proxyAccepted(ProxyHeader)
        /// Queue `100 Continue` (nothing of the body is here yet), then step again.
        case sendContinue
        /// Drop `count` bytes right after the head (they went to the body sink), then step
        /// again.
        case dropBodyBytes(count: Int)
        /// Run the app.
        case dispatch(Request)
        /// A malformed or oversized request: answer with the error, half-close, then read
        /// and drop (the state is `.discarding`).
        case reject(HTTPRequestError)
        /// A PROXY header that cannot be believed or parsed: log and close.
        case refuseProxy(String)
        /// A broken uwsgi packet (a broken front end): log and close, never call the app.
        case refusePacket(UWSGIParseError)
        /// Close once the pending answers are written (the state is `.closing`).
        case closeAfterPending
        /// Close now, dropping what is pending.
        case close
    }

    /// What to do with a readable event.
    enum ReadStep: Equatable {
        /// Read (to the end of the stream when the event also reported a hang-up), then step.
        case read(toEnd: Bool)
        /// Read and drop everything.
        case discard
        /// Nothing: the event is remembered until the app is done, or the connection closes.
        case later
    }

    /// What follows a finished response.
    enum AfterResponse: Equatable {
        /// Close once the answer is written.
        case close
        /// Drop the request's `consumed` bytes and go on: read first when the socket became
        /// readable while the app ran (`read` holds the hang-up flag), else step with what is
        /// buffered.
        case next(consumed: Int, read: ReadStep?)
    }

    private(set) var state: State
    /// Set at the start, or by the first byte when `detect` is on.
    private(set) var wire: Wire
    /// A socket handed by a zerg server without `--protocol`: the first byte decides the
    /// wire (0, a uwsgi packet's modifier1 for WSGI, is uwsgi; anything else is HTTP,
    /// which starts with a method's letter, or with a PROXY header's `P` or CR).
    private var detect = false
    private let proxyProtocol: Bool
    var head = HTTPRequestHead()
    /// The vars of a uwsgi packet; `head` then holds the framing derived from them. On the
    /// heap, made by the first packet: an HTTP connection (and an idle one) does not carry
    /// its bytes (see "Idle connections" in docs/architecture.md).
    private var uwsgiPacket: OnHeap<UWSGIRequestHead>?
    var uwsgiHead: UWSGIRequestHead { uwsgiPacket?.value ?? UWSGIRequestHead() }
    /// The state of a chunked body, made by the first chunked request (on the heap likewise).
    private var chunkedDecoder: OnHeap<ChunkedDecoder>?
    /// Body bytes of the request in the app that sit in the buffer after the head.
    private var bodyInBuffer = 0
    var keepAlive = true
    /// Set by a drain: the connection closes after the response in progress.
    private(set) var closeAfterResponse = false
    /// When the current head started arriving, the connection went idle, or a write
    /// stalled (seconds, monotonic).
    private(set) var since: Double
    /// When the body of the current request must be in.
    private(set) var bodyDeadline = 0.0
    private(set) var requestsServed = 0
    /// The socket was full: the worker waits for it to drain before reading more requests.
    private(set) var writeBlocked = false
    /// The socket became readable while the request was in the app, and whether that event
    /// reported the peer's hang-up: edge-triggered, it will not come again.
    private var readableWhileInApp = false
    private var hangupWhileInApp = false

    /// `wire` nil: decided by the connection's first byte.
    init(wire: Wire?, proxyProtocol: Bool, now: Double) {
        self.wire = wire ?? .http
        detect = wire == nil
        self.proxyProtocol = proxyProtocol
        state = proxyProtocol && wire == .http ? .proxyHeader : .head
        since = now
    }

    /// Whether the request in progress is in the app.
    var isInApp: Bool { state == .inApp }

    // MARK: Reading

    /// A readable event (`hangup`: it also reported the peer's hang-up).
    mutating func readable(hangup: Bool) -> ReadStep {
        switch state {
        case .inApp:
            readableWhileInApp = true
            hangupWhileInApp = hangupWhileInApp || hangup
            return .later
        case .closing:
            return .later
        case .discarding:
            return .discard
        default:
            return .read(toEnd: hangup)
        }
    }

    /// Bytes arrived: `before` were buffered before the read, `after` are now. The head
    /// timeout counts from a head's first byte, not from the idle time before it.
    mutating func received(before: Int, after: Int, now: Double) {
        if state == .head && before == 0 && after > 0 { since = now }
    }

    /// The next action for the buffered `bytes`. `pending`: answer bytes not yet written;
    /// `peerClosed`: the stream ended after these bytes; `draining`: the worker is
    /// stopping. Large and chunked bodies are given to `body` piece by piece; when it
    /// returns false (no room for the body) the connection closes.
    mutating func step(_ bytes: UnsafeRawBufferPointer, pending: Int, peerClosed: Bool, draining: Bool, now: Double,
                       rules: ConnectionRules, body: (UnsafeRawBufferPointer) -> Bool) -> Action {
        while true {
            switch state {
            case .inApp, .discarding, .closing:
                return .wait
            case .proxyHeader:
                if bytes.isEmpty { return draining || peerClosed ? closeAfterPending() : .readMore }
                switch parseProxyHeader(bytes) {
                case .incomplete:
                    return peerClosed ? closeAfterPending() : .readMore
                case let .failure(why):
                    return .refuseProxy(why)
                case let .complete(proxy):
                    state = .head
                    return .proxyAccepted(proxy)
                }
            case .head:
                if pending > 0 && (rules.writeBeforeNextRequest || pending >= rules.pendingLimit) {
                    // Answers go out before more pipelined requests are taken: a client that
                    // does not read would otherwise make them grow without bound.
                    return .writePending
                }
                if bytes.isEmpty { return draining || peerClosed ? closeAfterPending() : .readMore }
                if detect {
                    detect = false
                    wire = bytes[0] == 0 ? .uwsgi : .http
                    if wire == .http && proxyProtocol {
                        state = .proxyHeader
                        continue
                    }
                }
                if wire == .uwsgi {
                    if uwsgiPacket == nil { uwsgiPacket = OnHeap(UWSGIRequestHead()) }
                    switch rules.uwsgi.parseHead(bytes, into: &uwsgiPacket!.value) {
                    case .incomplete:
                        return peerClosed ? closeAfterPending() : .readMore
                    case let .failure(error):
                        return .refusePacket(error)
                    case .complete:
                        head.adoptUWSGI(uwsgiPacket!.value, in: bytes)
                        keepAlive = false  // uwsgi: one request per connection
                    }
                } else {
                    switch rules.http.parseHead(bytes, into: &head) {
                    case .incomplete:
                        return peerClosed ? closeAfterPending() : .readMore
                    case let .failure(error):
                        state = .discarding(until: now + rules.discardTime)
                        return .reject(error)
                    case .complete:
                        keepAlive = head.keepAlive
                    }
                }
                if let action = startBody(bytes, now: now, draining: draining, rules: rules, body: body) { return action }
            case let .body(remaining):
                guard case let .contentLength(total) = head.framing else { preconditionFailure("body state without a length") }
                let have = bytes.count - head.headLength
                if total > rules.bodyMemoryBytes {
                    // Through the sink; the bytes after the body (a pipelined request) stay.
                    let take = min(have, remaining)
                    if take > 0 {
                        let piece = UnsafeRawBufferPointer(rebasing: bytes[head.headLength..<(head.headLength + take)])
                        if !body(piece) { return .close }
                        state = .body(remaining: remaining - take)
                        return .dropBodyBytes(count: take)
                    }
                    if remaining > 0 { return peerClosed ? .close : .readMore }
                    return dispatch(Request(body: .sink, contentLength: total), inBuffer: 0, draining: draining)
                }
                if have < total { return peerClosed ? .close : .readMore }
                return dispatch(Request(body: .inBuffer(count: total), contentLength: total), inBuffer: total, draining: draining)
            case .chunked:
                if chunkedDecoder!.value.isDone {
                    return dispatch(Request(body: .sink, contentLength: chunkedDecoder!.value.decodedBytes), inBuffer: 0, draining: draining)
                }
                let input = UnsafeRawBufferPointer(rebasing: bytes[head.headLength...])
                var full = false
                let result = chunkedDecoder!.value.decode(input) { piece in
                    if !full && !body(piece) { full = true }
                }
                if full { return .close }
                switch result {
                case let .needMore(consumed):
                    if consumed > 0 { return .dropBodyBytes(count: consumed) }
                    return peerClosed ? .close : .readMore
                case let .done(consumed):
                    if consumed > 0 { return .dropBodyBytes(count: consumed) }
                case let .failure(error):
                    state = .discarding(until: now + rules.discardTime)
                    return .reject(error)
                }
            }
        }
    }

    /// A head is complete (HTTP, or derived from a uwsgi packet): dispatch it when its body
    /// is here, else start reading the body. The whole body is read before the app runs, so
    /// an app that ignores it leaves nothing on the wire and a slow uploader holds no app
    /// thread; `Expect: 100-continue` is answered here, before any byte of the final
    /// response can exist, and only while nothing of the body has arrived. nil: step on.
    private mutating func startBody(_ bytes: UnsafeRawBufferPointer, now: Double, draining: Bool, rules: ConnectionRules,
                                    body: (UnsafeRawBufferPointer) -> Bool) -> Action? {
        let have = bytes.count - head.headLength
        var action: Action? = nil
        switch head.framing {
        case .none:
            return dispatch(Request(body: .none, contentLength: nil), inBuffer: 0, draining: draining)
        case let .contentLength(n):
            if have >= n {
                return dispatch(Request(body: n == 0 ? .none : .inBuffer(count: n), contentLength: n), inBuffer: n, draining: draining)
            }
            if n > rules.bodyMemoryBytes && have > 0 {
                if !body(UnsafeRawBufferPointer(rebasing: bytes[head.headLength...])) { return .close }
                action = .dropBodyBytes(count: have)
            }
            state = .body(remaining: n - have)
        case .chunked:
            if chunkedDecoder == nil {
                chunkedDecoder = OnHeap(ChunkedDecoder(maxBodyBytes: rules.maxBodyBytes))
            } else {
                chunkedDecoder!.value = ChunkedDecoder(maxBodyBytes: rules.maxBodyBytes)
            }
            state = .chunked
        }
        bodyDeadline = now + (rules.bodyTimeout ?? rules.headTimeout)
        if head.expectContinue && have == 0 && wire == .http { return .sendContinue }
        return action
    }

    private mutating func dispatch(_ request: Request, inBuffer: Int, draining: Bool) -> Action {
        state = .inApp
        bodyInBuffer = inBuffer
        if draining { closeAfterResponse = true }
        return .dispatch(request)
    }

    private mutating func closeAfterPending() -> Action {
        state = .closing
        return .closeAfterPending
    }

    // MARK: After the app

    /// The app's response is complete. `reusable`: its length was framed (Content-Length
    /// or chunked) and nothing asked to close, so the connection can carry another request.
    mutating func appFinished(reusable: Bool, now: Double) -> AfterResponse {
        precondition(state == .inApp, "a response finished for a connection not in the app")
        requestsServed += 1
        if !reusable || !keepAlive || closeAfterResponse {
            state = .closing
            return .close
        }
        let consumed = head.headLength + bodyInBuffer
        bodyInBuffer = 0
        state = .head
        since = now
        var read: ReadStep? = nil
        if readableWhileInApp {
            read = .read(toEnd: hangupWhileInApp)
            readableWhileInApp = false
            hangupWhileInApp = false
        }
        return .next(consumed: consumed, read: read)
    }

    // MARK: Writing

    /// The socket took no more of the pending answers.
    mutating func writeStalled(now: Double) {
        if !writeBlocked {
            writeBlocked = true
            since = now
        }
    }

    /// Bytes went out of a long answer (a static file): the client reads, so the send
    /// timeout counts from now.
    mutating func wroteSome(now: Double) {
        if writeBlocked { since = now }
    }

    /// Every pending answer is written: close (the connection was `.closing`), resume (it
    /// was stalled, and may hold pipelined requests to step through), or nothing new.
    mutating func writeDrained(now: @autoclosure () -> Double) -> AfterWrite {
        let wasBlocked = writeBlocked
        writeBlocked = false
        if state == .closing { return .close }
        if wasBlocked {
            since = now()
            return .resume
        }
        return .none
    }

    /// The worker closes the connection once its pending answers are written.
    mutating func closeAfterWrite() {
        precondition(state != .inApp, "closing a connection whose request is in the app")
        state = .closing
    }

    enum AfterWrite: Equatable {
        case none
        /// Wait for reads again and step with what is buffered.
        case resume
        case close
    }

    // MARK: Time and draining

    /// Whether a deadline has passed (called about once a second). `buffered`: bytes not yet
    /// consumed.
    func expired(now t: Double, buffered: Int, draining: Bool, rules: ConnectionRules) -> Bool {
        if writeBlocked { return t - since > rules.sendTimeout }
        switch state {
        case .inApp, .closing:
            return false
        case let .discarding(until):
            return t >= until
        case .head where buffered == 0:
            if requestsServed > 0 { return t - since > (draining ? 0 : rules.keepAliveTimeout) }
            return t - since > rules.headTimeout
        case .body, .chunked:
            // One deadline for the whole body, however steadily it trickles in.
            return t >= bodyDeadline
        default:
            return t - since > rules.headTimeout
        }
    }

    /// The worker begins to drain: every connection closes after its response in progress.
    /// An idle keep-alive connection may still hold a request the worker has not read (it
    /// was busy in the app): `.read` says to read and step before deciding it is idle.
    mutating func drain(buffered: Int) -> ReadStep? {
        closeAfterResponse = true
        guard state == .head, buffered == 0, requestsServed > 0 else { return nil }
        if writeBlocked {
            state = .closing
            return nil
        }
        return .read(toEnd: false)
    }
}

/// A value kept on the heap behind one reference, copied when written while shared, so the
/// machine stays a value: for the parts few connections use, which would otherwise sit in
/// every connection.
struct OnHeap<Value> {
    private final class Storage {
        var value: Value
        init(_ value: Value) { self.value = value }
    }

    private var storage: Storage

    init(_ value: Value) { storage = Storage(value) }

    var value: Value {
        get { storage.value }
        _modify {
            if !isKnownUniquelyReferenced(&storage) { storage = Storage(storage.value) }
            yield &storage.value
        }
    }
}
