import ApusProtocols
import Testing
@testable import ApusWorker

// Sockets handed by a zerg server without --protocol: the first byte of each connection
// says what it speaks (0, a uwsgi packet's modifier1, is uwsgi; anything else HTTP).

@Test func aZeroFirstByteIsAUwsgiPacket() {
    var h = Harness(wire: nil)
    h.receive(uwsgiPacket(["REQUEST_METHOD": "GET", "REQUEST_URI": "/u", "PATH_INFO": "/u"]))
    #expect(h.machine.wire == .uwsgi)
    #expect(h.events == [.request(method: "GET", target: "/u", body: []), .closeAfterPending])
}

@Test func anyOtherFirstByteIsHTTP() {
    var h = Harness(wire: nil)
    h.receive("GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    #expect(h.machine.wire == .http)
    #expect(h.events == [.request(method: "GET", target: "/a", body: [])])
    #expect(!h.ended, "HTTP keeps the connection")
}

@Test func theDecisionWaitsForTheFirstByteAndIsTakenOnce() {
    var h = Harness(wire: nil)
    h.receive([])
    #expect(h.events.isEmpty && h.machine.state == .head)
    let packet = uwsgiPacket(["REQUEST_METHOD": "GET", "REQUEST_URI": "/b", "PATH_INFO": "/b"])
    for byte in packet { h.receive([byte]) }  // byte by byte
    #expect(h.events == [.request(method: "GET", target: "/b", body: []), .closeAfterPending])
}

@Test func aNonWSGIModifierIsTakenForHTTPAndRejected() {
    var h = Harness(wire: nil)
    h.receive([1, 4, 0, 0, 0, 0, 0, 0])
    #expect(h.machine.wire == .http)
    #expect(h.events.isEmpty, "an HTTP head is read until its end (or the header timeout)")
    h.receive("\r\n\r\n")
    #expect(h.events == [.reject(400)])
}

@Test func withProxyProtocolAnHTTPConnectionStartsWithItsHeader() {
    var h = Harness(wire: nil, proxyProtocol: true)
    h.receive("PROXY TCP4 192.0.2.1 192.0.2.2 5000 80\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
    guard case let .proxy(header)? = h.events.first else { Issue.record("\(h.events)"); return }
    #expect(header.sourcePort == 5000)
    #expect(h.requests == [.request(method: "GET", target: "/", body: [])])

    var v2 = Harness(wire: nil, proxyProtocol: true)
    v2.receive("GET / HTTP/1.1\r\nHost: x\r\n\r\n")  // no header: refused as on an HTTP socket
    #expect(v2.events == [.refuseProxy])

    var packet = Harness(wire: nil, proxyProtocol: true)  // a uwsgi packet carries no PROXY header
    packet.receive(uwsgiPacket(["REQUEST_METHOD": "GET", "REQUEST_URI": "/", "PATH_INFO": "/"]))
    #expect(packet.machine.wire == .uwsgi)
    #expect(packet.requests.count == 1)
}
