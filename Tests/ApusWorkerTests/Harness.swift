import ApusProtocols
@testable import ApusWorker

/// Plays the worker's part for one `ConnectionMachine`: keeps the buffered bytes, carries
/// out every action as the worker does, and records what a client would see. No socket,
/// no Python: the app "runs" by recording the request and finishing when told.
struct Harness {
    enum Event: Equatable {
        case request(method: String, target: String, body: [UInt8])
        case sendContinue
        case writePending
        case proxy(ProxyHeader)
        case reject(Int)
        case refuseProxy
        case refusePacket
        case close
        case closeAfterPending
    }

    var rules: ConnectionRules
    var machine: ConnectionMachine
    /// Bytes received and not consumed, from the machine's first byte.
    var buffer: [UInt8] = []
    /// What the body sink was given for the request being read.
    var sink: [UInt8] = []
    /// The sink refuses bytes (no room for the body).
    var sinkRefuses = false
    var pending = 0
    var now = 0.0
    var peerClosed = false
    var draining = false
    /// Answer each request at once (framed, keep-alive), as a fast app does.
    var autoFinish = true
    var events: [Event] = []
    /// A request is in the app.
    var inApp = false
    /// The connection is done with (closed, rejected or refused).
    var ended = false

    init(wire: ConnectionMachine.Wire? = .http, proxyProtocol: Bool = false, rules: ConnectionRules = ConnectionRules()) {
        self.rules = rules
        machine = ConnectionMachine(wire: wire, proxyProtocol: proxyProtocol, now: 0)
    }

    var requests: [Event] { events.filter { if case .request = $0 { return true } else { return false } } }

    /// Bytes arrive (one read), then the machine steps.
    mutating func receive(_ bytes: [UInt8]) {
        let before = buffer.count
        buffer += bytes
        machine.received(before: before, after: buffer.count, now: now)
        run()
    }

    mutating func receive(_ text: String) { receive(Array(text.utf8)) }

    /// The stream ends after what was received.
    mutating func hangUp() {
        peerClosed = true
        run()
    }

    /// Steps until the machine waits, carrying out each action.
    mutating func run() {
        while !ended {
            let sinkRefuses = self.sinkRefuses
            var given: [UInt8] = []
            let action = buffer.withUnsafeBytes { bytes in
                machine.step(bytes, pending: pending, peerClosed: peerClosed, draining: draining, now: now, rules: rules) { piece in
                    if sinkRefuses { return false }
                    given += piece
                    return true
                }
            }
            sink += given
            switch action {
            case .readMore, .wait:
                return
            case .writePending:
                events.append(.writePending)
                pending = 0
            case let .proxyAccepted(proxy):
                events.append(.proxy(proxy))
                buffer.removeFirst(proxy.length)
            case .sendContinue:
                events.append(.sendContinue)
                pending += 25
            case let .dropBodyBytes(count):
                let at = machine.head.headLength
                buffer.removeSubrange(at..<(at + count))
            case let .dispatch(request):
                let head = machine.head
                let body: [UInt8]
                switch request.body {
                case .none: body = []
                case let .inBuffer(count): body = Array(buffer[head.headLength..<(head.headLength + count)])
                case .sink: body = sink
                }
                if let length = request.contentLength { precondition(length == body.count, "CONTENT_LENGTH \(length) for a body of \(body.count)") }
                sink = []
                events.append(.request(method: String(decoding: buffer[head.method], as: UTF8.self),
                                       target: String(decoding: buffer[head.target], as: UTF8.self), body: body))
                inApp = true
                if !autoFinish { return }
                finish()
            case let .reject(error):
                events.append(.reject(error.status))
                ended = true
            case .refuseProxy:
                events.append(.refuseProxy)
                ended = true
            case .refusePacket:
                events.append(.refusePacket)
                ended = true
            case .closeAfterPending:
                events.append(.closeAfterPending)
                ended = true
            case .close:
                events.append(.close)
                ended = true
            }
        }
    }

    /// The app's response is complete; `reusable` as the response writer decides it.
    mutating func finish(reusable: Bool = true) {
        precondition(inApp)
        inApp = false
        pending += 10  // the answer, held until the end of the batch
        switch machine.appFinished(reusable: reusable, now: now) {
        case .close:
            events.append(.closeAfterPending)
            ended = true
        case let .next(consumed, read):
            buffer.removeFirst(consumed)
            if read != nil { return }  // the worker reads, then steps
            run()
        }
    }
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }
