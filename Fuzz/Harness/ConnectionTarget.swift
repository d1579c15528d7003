// Target `connection`: ConnectionMachine (Sources/ApusWorker/ConnectionMachine.swift, compiled
// into this module by scripts/fuzz.sh) driven as a worker drives it, on arbitrary bytes.
// Byte 0 picks the setting: bit 0 uwsgi (else HTTP), bit 1 PROXY protocol, bit 2 app
// threads (answers written before the next request), bit 3 small limits (bodies past 8
// bytes through the sink, at most 100), bit 4 unframed answers (close after each). Byte 1
// seeds how the rest is cut into reads. Checks:
// - the requests the app is given (method, target, body) and how the connection ends are the
//   same whether the bytes arrive in one read or in many;
// - a dispatched body has CONTENT_LENGTH bytes; the machine never asks to drop or consume
//   more bytes than are buffered;
// - `100 Continue`: HTTP only, only while no byte of the body has arrived, at most once per
//   request, never while a request is in the app.

struct ConnectionSetting {
    /// nil: told apart by the first byte (a socket handed by a zerg server).
    var wire: ConnectionMachine.Wire?
    var proxyProtocol: Bool
    var rules: ConnectionRules
    var reusable: Bool

    init(_ byte: UInt8) {
        wire = byte & 32 != 0 ? nil : byte & 1 != 0 ? .uwsgi : .http
        proxyProtocol = byte & 2 != 0
        rules = ConnectionRules()
        rules.writeBeforeNextRequest = byte & 4 != 0
        if byte & 8 != 0 {
            rules.bodyMemoryBytes = 8
            rules.maxBodyBytes = 100
            rules.http = HTTPRequestParser(limits: smallHTTPLimits)
            rules.uwsgi = UWSGIRequestParser(limits: smallUWSGILimits)
        }
        reusable = byte & 16 == 0
    }
}

/// What the app and the client saw of one connection.
struct ConnectionTranscript: Equatable {
    var requests: [[UInt8]] = []
    var end = "open"
}

func driveConnection(_ stream: UnsafeRawBufferPointer, _ setting: ConnectionSetting, cutSeed: UInt8?) -> ConnectionTranscript {
    var machine = ConnectionMachine(wire: setting.wire, proxyProtocol: setting.proxyProtocol, now: 0)
    var transcript = ConnectionTranscript()
    var buffer: [UInt8] = []
    var sink: [UInt8] = []
    var pending = 0
    var continued = false
    var offset = 0
    var seed = UInt32(cutSeed ?? 0) &* 2654435761 &+ 1
    while offset < stream.count {
        var size = stream.count - offset
        if cutSeed != nil {
            seed = seed &* 1103515245 &+ 12345
            size = min(size, 1 + Int((seed >> 16) % 64))
        }
        let before = buffer.count
        buffer += UnsafeRawBufferPointer(rebasing: stream[offset..<(offset + size)])
        offset += size
        machine.received(before: before, after: buffer.count, now: 0)
        steps: while true {
            let action = buffer.withUnsafeBytes { bytes in
                machine.step(bytes, pending: pending, peerClosed: false, draining: false, now: 0, rules: setting.rules) { piece in
                    sink += piece
                    return true
                }
            }
            switch action {
            case .readMore, .wait:
                break steps
            case .writePending:
                require(pending > 0, "writePending with nothing pending")
                pending = 0
            case let .proxyAccepted(proxy):
                require(setting.proxyProtocol && proxy.length <= buffer.count, "PROXY header of \(proxy.length) bytes in \(buffer.count)")
                buffer.removeFirst(proxy.length)
            case .sendContinue:
                require(machine.wire == .http, "100 Continue on a uwsgi connection")
                require(buffer.count == machine.head.headLength, "100 Continue with body bytes already here")
                require(!continued, "two 100 Continue for one request")
                require(!machine.isInApp, "100 Continue while a request is in the app")
                continued = true
                pending += 25
            case let .dropBodyBytes(count):
                require(count > 0 && machine.head.headLength + count <= buffer.count, "dropping \(count) body bytes of \(buffer.count - machine.head.headLength)")
                buffer.removeSubrange(machine.head.headLength..<(machine.head.headLength + count))
            case let .dispatch(request):
                let head = machine.head
                var body: [UInt8] = []
                switch request.body {
                case .none: break
                case let .inBuffer(count):
                    require(head.headLength + count <= buffer.count, "body past the buffer")
                    body = Array(buffer[head.headLength..<(head.headLength + count)])
                case .sink: body = sink
                }
                require(body.count == (request.contentLength ?? 0), "CONTENT_LENGTH \(String(describing: request.contentLength)) for \(body.count) bytes")
                transcript.requests.append(Array(buffer[head.method]) + [0x20] + Array(buffer[head.target]) + [0x20] + body)
                sink = []
                continued = false
                pending += 10
                switch machine.appFinished(reusable: setting.reusable, now: 0) {
                case .close:
                    transcript.end = "closed after an answer"
                    return transcript
                case let .next(consumed, _):
                    require(consumed <= buffer.count, "consuming \(consumed) of \(buffer.count)")
                    buffer.removeFirst(consumed)
                }
            case let .reject(error):
                transcript.end = "rejected \(error.status)"
                return transcript
            case .refuseProxy:
                transcript.end = "PROXY refused"
                return transcript
            case .refusePacket:
                transcript.end = "packet refused"
                return transcript
            case .closeAfterPending:
                transcript.end = "closed"
                return transcript
            case .close:
                transcript.end = "closed at once"
                return transcript
            }
        }
    }
    return transcript
}

func fuzzConnection(_ b: UnsafeRawBufferPointer) {
    guard b.count >= 2 else { return }
    let setting = ConnectionSetting(b[0])
    let stream = UnsafeRawBufferPointer(rebasing: b[2...])
    let whole = driveConnection(stream, setting, cutSeed: nil)
    let cut = driveConnection(stream, setting, cutSeed: b[1])
    require(whole == cut, "one read gave \(whole.requests.count) requests, \(whole.end); many reads gave \(cut.requests.count), \(cut.end): \(show(b))")
}
