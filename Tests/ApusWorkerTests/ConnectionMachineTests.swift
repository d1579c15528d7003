import ApusProtocols
import Testing
@testable import ApusWorker

// MARK: Requests and pipelining

@Test func aGetIsDispatchedAndTheConnectionStays() {
    var h = Harness()
    h.receive("GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    #expect(h.events == [.request(method: "GET", target: "/a", body: [])])
    #expect(!h.ended)
    #expect(h.machine.state == .head)
}

@Test func pipelinedRequestsGoOneAtATimeInOrder() {
    var h = Harness()
    h.autoFinish = false
    h.receive("GET /1 HTTP/1.1\r\nHost: x\r\n\r\nPOST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /3 HTTP/1.1\r\nHost: x\r\n\r\n")
    #expect(h.requests.count == 1, "the next request waits for the app")
    h.finish()
    #expect(h.requests.count == 2)
    h.finish()
    h.finish()
    #expect(h.requests == [.request(method: "GET", target: "/1", body: []),
                           .request(method: "POST", target: "/2", body: bytes("abc")),
                           .request(method: "GET", target: "/3", body: [])])
    #expect(h.buffer.isEmpty)
}

@Test func aConnectionCloseRequestClosesAfterItsAnswer() {
    var h = Harness()
    h.receive("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\nHost: x\r\n\r\n")
    #expect(h.events == [.request(method: "GET", target: "/", body: []), .closeAfterPending])
}

@Test func anUnframedResponseClosesTheConnection() {
    var h = Harness()
    h.autoFinish = false
    h.receive("GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /never HTTP/1.1\r\nHost: x\r\n\r\n")
    h.finish(reusable: false)
    #expect(h.events == [.request(method: "GET", target: "/", body: []), .closeAfterPending])
}

@Test func answersPastThePendingLimitAreWrittenBeforeTheNextRequest() {
    var rules = ConnectionRules()
    rules.pendingLimit = 15
    var h = Harness(rules: rules)
    h.receive("GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\nGET /3 HTTP/1.1\r\nHost: x\r\n\r\n")
    // Each answer adds 10 pending bytes: the third request waits for a write.
    #expect(h.events.count == 4)
    #expect(h.events[2] == .writePending)
    #expect(h.requests.count == 3)
}

@Test func withAppThreadsEveryPendingAnswerGoesOutBeforeTheNextRequest() {
    var rules = ConnectionRules()
    rules.writeBeforeNextRequest = true
    var h = Harness(rules: rules)
    h.receive("GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
    #expect(h.events.map { if case .request = $0 { "r" } else { "\($0)" } } == ["r", "writePending", "r", "writePending"])
}

// MARK: Bodies

@Test func aBodyArrivingInPiecesIsDispatchedWhole() {
    var h = Harness()
    h.receive("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234")
    #expect(h.requests.isEmpty)
    h.receive("56789")
    #expect(h.requests == [.request(method: "POST", target: "/", body: bytes("0123456789"))])
}

@Test func aLargeBodyGoesThroughTheSinkAndThePipelinedRequestStays() {
    var rules = ConnectionRules()
    rules.bodyMemoryBytes = 4
    var h = Harness(rules: rules)
    h.receive("POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n012")
    h.receive("3456789GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
    #expect(h.requests == [.request(method: "POST", target: "/big", body: bytes("0123456789")),
                           .request(method: "GET", target: "/next", body: [])])
}

@Test func aChunkedBodyIsDecodedThroughTheSink() {
    var h = Harness()
    h.receive("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    #expect(h.requests.isEmpty)
    h.receive("2\r\nde\r\n0\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n")
    #expect(h.requests == [.request(method: "POST", target: "/", body: bytes("abcde")),
                           .request(method: "GET", target: "/after", body: [])])
}

@Test func aBrokenChunkIsRejectedWith400() {
    var h = Harness()
    h.receive("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n")
    #expect(h.events == [.reject(400)])
    guard case .discarding = h.machine.state else { Issue.record("\(h.machine.state)"); return }
}

@Test func aBodyWithNoRoomClosesTheConnection() {
    var rules = ConnectionRules()
    rules.bodyMemoryBytes = 4
    var h = Harness(rules: rules)
    h.sinkRefuses = true
    h.receive("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123")
    #expect(h.events == [.close])
}

@Test func aPeerThatHangsUpMidBodyIsClosedWithoutCallingTheApp() {
    var h = Harness()
    h.receive("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n012")
    h.hangUp()
    #expect(h.events == [.close])
}

@Test func aPeerThatHangsUpWhenIdleClosesAfterItsAnswers() {
    var h = Harness()
    h.receive("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    h.hangUp()
    #expect(h.events.last == .closeAfterPending)
}

// MARK: Expect: 100-continue (the hostile-input cases)

@Test func continueIsSentOnlyBeforeAnyBodyByte() {
    var h = Harness()
    h.receive("POST /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    #expect(h.events == [.sendContinue])
    h.receive("hello")
    #expect(h.events == [.sendContinue, .request(method: "POST", target: "/up", body: bytes("hello"))])
}

@Test func aBodySentWithTheHeadGetsNoContinue() {
    var h = Harness()
    h.receive("POST /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhel")
    h.receive("lo")
    #expect(h.events == [.request(method: "POST", target: "/up", body: bytes("hello"))])
}

/// A request hidden in an Expect body is body, never a request of its own.
@Test func aRequestInsideAnExpectBodyIsNeverServed() {
    let smuggled = "GET /SMUGGLED HTTP/1.1\r\nHost: x\r\n\r\n"
    for split in [0, 10, smuggled.utf8.count] {
        var h = Harness()
        h.autoFinish = false
        h.receive("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: \(smuggled.utf8.count)\r\n\r\n")
        h.receive(String(smuggled.prefix(split)))
        h.receive(String(smuggled.dropFirst(split)))
        h.finish()
        #expect(h.requests == [.request(method: "POST", target: "/", body: bytes(smuggled))])
        #expect(h.events.filter { $0 == .sendContinue }.count <= 1)
    }
}

@Test func aBodyOverTheLimitIsRefusedWith413BeforeAnyContinue() {
    var rules = ConnectionRules()
    var limits = HTTPParserLimits()
    limits.maxBodyBytes = 100
    rules.http = HTTPRequestParser(limits: limits)
    var h = Harness(rules: rules)
    h.receive("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 101\r\n\r\n")
    #expect(h.events == [.reject(413)])
}

@Test func aChunkedExpectGetsOneContinue() {
    var h = Harness()
    h.receive("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n")
    h.receive("1\r\na\r\n")
    h.receive("0\r\n\r\n")
    #expect(h.events == [.sendContinue, .request(method: "POST", target: "/", body: bytes("a"))])
}

@Test func aUwsgiRequestNeverGetsAContinue() {
    var h = Harness(wire: .uwsgi)
    h.receive(uwsgiPacket(["REQUEST_METHOD": "POST", "REQUEST_URI": "/u", "PATH_INFO": "/u", "CONTENT_LENGTH": "2", "HTTP_EXPECT": "100-continue"]))
    h.receive("ok")
    #expect(h.events == [.request(method: "POST", target: "/u", body: bytes("ok")), .closeAfterPending])
}

/// An Expect request pipelined behind a request still in the app: its 100 can only follow
/// the answer before it, never land inside it.
@Test func noContinueWhileTheRequestBeforeIsInTheApp() {
    var h = Harness()
    h.autoFinish = false
    h.receive("GET /first HTTP/1.1\r\nHost: x\r\n\r\nPOST /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    #expect(h.events == [.request(method: "GET", target: "/first", body: [])])
    h.finish()
    #expect(h.events == [.request(method: "GET", target: "/first", body: []), .sendContinue])
    h.receive("ok")
    #expect(h.requests.last == .request(method: "POST", target: "/up", body: bytes("ok")))
}

/// Behind answers the client does not read, an Expect request waits for them to be written
/// (past the pending limit) before its head is even parsed.
@Test func anExpectBehindUnreadAnswersWaitsForThemToBeWritten() {
    var rules = ConnectionRules()
    rules.pendingLimit = 30
    var h = Harness(rules: rules)
    let get = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    h.receive(String(repeating: get, count: 4) + "POST /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    let kinds = h.events.map { if case .request = $0 { "r" } else { "\($0)" } }
    #expect(kinds == ["r", "r", "r", "writePending", "r", "sendContinue"])
}

/// A large Expect body goes through the sink; the request line stays what the client sent.
@Test func aLargeExpectBodyKeepsItsRequestLine() {
    var rules = ConnectionRules()
    rules.bodyMemoryBytes = 16
    var h = Harness(rules: rules)
    h.receive("PUT /files/a%20b?x=1 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 100\r\n\r\n")
    #expect(h.events == [.sendContinue])
    for _ in 0..<10 { h.receive(String(repeating: "z", count: 10)) }
    #expect(h.requests == [.request(method: "PUT", target: "/files/a%20b?x=1", body: bytes(String(repeating: "z", count: 100)))])
}

/// A slow uploader holds no app thread: nothing is dispatched until its last byte.
@Test func aSlowExpectUploadIsNotDispatchedEarly() {
    var h = Harness()
    h.receive("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 50\r\n\r\n")
    for i in 0..<49 {
        h.now = Double(i) * 0.1
        h.receive("a")
        #expect(h.requests.isEmpty)
    }
    h.receive("a")
    #expect(h.requests.count == 1)
}

// MARK: Malformed input

@Test func aMalformedHeadIsRejectedAndTheRestDiscarded() {
    var h = Harness()
    h.receive("GET / HTTP/1.1\r\nHost x\r\n\r\nGET /never HTTP/1.1\r\n\r\n")
    #expect(h.events == [.reject(400)])
    #expect(h.machine.readable(hangup: false) == .discard)
    #expect(!h.machine.expired(now: 1.9, buffered: 0, draining: false, rules: h.rules))
    #expect(h.machine.expired(now: 2.0, buffered: 0, draining: false, rules: h.rules))
}

@Test func aBrokenUwsgiPacketIsRefused() {
    var h = Harness(wire: .uwsgi)
    h.receive([1, 4, 0, 0, 0, 0, 0, 0])  // modifier1 1 is not WSGI
    #expect(h.events == [.refusePacket])
}

@Test func aProxyHeaderIsTakenThenTheRequest() {
    var h = Harness(proxyProtocol: true)
    h.receive("PROXY TCP4 192.0.2.1 192.0.2.2 5000 80\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
    guard case let .proxy(header)? = h.events.first else { Issue.record("\(h.events)"); return }
    #expect(header.sourcePort == 5000)
    #expect(h.requests == [.request(method: "GET", target: "/", body: [])])
}

@Test func aBadProxyHeaderIsRefused() {
    var h = Harness(proxyProtocol: true)
    h.receive("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    #expect(h.events == [.refuseProxy])
}

// MARK: Events while the app runs

@Test func aReadableEventDuringTheAppIsKeptForAfterIt() {
    var h = Harness()
    h.autoFinish = false
    h.receive("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    #expect(h.machine.readable(hangup: true) == .later)
    #expect(h.machine.appFinished(reusable: true, now: 1) == .next(consumed: 27, read: .read(toEnd: true)))
    #expect(h.machine.readable(hangup: false) == .read(toEnd: false))
}

// MARK: Deadlines

@Test func theHeadTimeoutCountsFromTheFirstByte() {
    var rules = ConnectionRules()
    rules.headTimeout = 10
    rules.keepAliveTimeout = 5
    var h = Harness(rules: rules)
    h.receive("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    #expect(!h.machine.expired(now: 5, buffered: 0, draining: false, rules: rules))
    #expect(h.machine.expired(now: 5.1, buffered: 0, draining: false, rules: rules), "idle keep-alive")
    h.now = 5
    h.receive("GET /slow HTTP/1.1\r\n")
    #expect(!h.machine.expired(now: 15, buffered: h.buffer.count, draining: false, rules: rules))
    #expect(h.machine.expired(now: 15.1, buffered: h.buffer.count, draining: false, rules: rules))
}

@Test func aDrainingWorkerClosesIdleKeepAliveConnectionsAtOnce() {
    var h = Harness()
    h.receive("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    #expect(h.machine.expired(now: 0.001, buffered: 0, draining: true, rules: h.rules))
}

@Test func theBodyHasOneDeadlineHoweverItTrickles() {
    var rules = ConnectionRules()
    rules.bodyTimeout = 3
    var h = Harness(rules: rules)
    h.receive("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
    for t in stride(from: 0.5, through: 2.5, by: 0.5) {
        h.now = t
        h.receive("x")
        #expect(!h.machine.expired(now: t, buffered: h.buffer.count, draining: false, rules: rules))
    }
    #expect(h.machine.expired(now: 3, buffered: h.buffer.count, draining: false, rules: rules))
}

@Test func aClientThatStopsReadingIsCutAfterTheSendTimeout() {
    var h = Harness()
    h.receive("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    h.machine.writeStalled(now: 1)
    #expect(!h.machine.expired(now: 31, buffered: 0, draining: false, rules: h.rules))
    #expect(h.machine.expired(now: 31.1, buffered: 0, draining: false, rules: h.rules))
    #expect(h.machine.writeDrained(now: 20) == .resume)
    #expect(!h.machine.writeBlocked)
}

@Test func aSlowReaderOfALongAnswerIsKeptWhileItReads() {
    var h = Harness()
    h.receive("GET /static/big HTTP/1.1\r\nHost: x\r\n\r\n")
    h.machine.writeStalled(now: 1)
    h.machine.wroteSome(now: 25)  // a static file's body: bytes went out
    #expect(!h.machine.expired(now: 55, buffered: 0, draining: false, rules: h.rules))
    #expect(h.machine.expired(now: 55.1, buffered: 0, draining: false, rules: h.rules))
    // Progress before any stall does not start the clock.
    var idle = Harness()
    idle.receive("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    idle.machine.wroteSome(now: 100)
    #expect(!idle.machine.writeBlocked)
}

// MARK: Draining

@Test func aDrainLetsTheRequestInTheAppFinishThenCloses() {
    var h = Harness()
    h.autoFinish = false
    h.receive("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    #expect(h.machine.drain(buffered: 0) == nil)
    #expect(h.machine.appFinished(reusable: true, now: 1) == .close)
}

@Test func aDrainReadsAnIdleConnectionBeforeClosingIt() {
    var h = Harness()
    h.receive("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    #expect(h.machine.drain(buffered: 0) == .read(toEnd: false))
    h.draining = true
    h.receive("GET /late HTTP/1.1\r\nHost: x\r\n\r\n")
    #expect(h.requests.count == 2, "a request already sent is served")
    #expect(h.events.last == .closeAfterPending)
}

@Test func aDrainClosesAStalledConnectionOnceItsAnswerIsOut() {
    var h = Harness()
    h.receive("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    h.machine.writeStalled(now: 0)
    #expect(h.machine.drain(buffered: 0) == nil)
    #expect(h.machine.writeDrained(now: 1) == .close)
}

/// A uwsgi packet: modifier1 0, the vars block's size, modifier2 0, then the vars.
func uwsgiPacket(_ vars: [String: String]) -> [UInt8] {
    var block: [UInt8] = []
    for (k, v) in vars.sorted(by: { $0.key < $1.key }) {
        for s in [k, v] {
            let b = Array(s.utf8)
            block += [UInt8(b.count & 0xFF), UInt8(b.count >> 8)] + b
        }
    }
    return [0, UInt8(block.count & 0xFF), UInt8(block.count >> 8), 0] + block
}
