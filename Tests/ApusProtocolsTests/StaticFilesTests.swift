import Testing
@testable import ApusProtocols

private func resolve(_ path: String, _ mount: String = "/static", decoded: Bool = false) -> StaticPath {
    bytes(path).withUnsafeBytes { StaticPath.resolve($0, mount: StaticPath.mountSegments(mount), decoded: decoded) }
}

@Test(arguments: [
    ("/static/a.css", "a.css"), ("/static/css/site.css", "css/site.css"), ("/static//css/./site.css", "css/site.css"),
    ("/static/caf%C3%A9.txt", "caf\u{E9}.txt"), ("/static/100%25.txt", "100%.txt"), ("/static/%7euser", "~user"),
    ("/./static/a", "a"), ("/static/.hidden", ".hidden"), ("/static/a..b", "a..b"), ("/static/%zz", "%zz"),
])
func staticPathNamesAFile(_ path: String, _ relative: String) {
    #expect(resolve(path) == .file(bytes(relative)))
}

@Test(arguments: [
    // Traversal, however spelled, and anything that is no file name.
    "/static/../secret", "/static/a/../../secret", "/static/%2e%2e/secret", "/static/%2E%2E/x", "/static/.%2e/x",
    "/static/a%2Fb", "/static/a%2f..%2fb", "/static/x%00.txt", "/static", "/static/", "/static/dir/", "/static/.",
])
func staticPathRefuses(_ path: String) {
    #expect(resolve(path) == .refused)
}

@Test(arguments: ["/", "/staticfoo/a", "/other/static/a", "", "static/a", "*", "/stat"])
func staticPathOutsideTheMount(_ path: String) {
    #expect(resolve(path) == .notMounted)
}

@Test func staticPathMounts() {
    #expect(resolve("/a", "/") == .file(bytes("a")))
    #expect(resolve("/", "/") == .refused)
    #expect(resolve("/a/b/c.js", "/a/b") == .file(bytes("c.js")))
    #expect(resolve("/a/c.js", "/a/b") == .notMounted)
    // uwsgi's PATH_INFO is already decoded: nothing is decoded twice.
    #expect(resolve("/static/100%25.txt", decoded: true) == .file(bytes("100%25.txt")))
    #expect(resolve("/static/a%2Fb", decoded: true) == .file(bytes("a%2Fb")))
    #expect(resolve("/static/../x", decoded: true) == .refused)
    #expect([UInt8](bytes("/static/a\0b")).withUnsafeBytes { StaticPath.resolve($0, mount: [bytes("static")], decoded: true) } == .refused)
}

private func accepted(_ s: String) -> [StaticEncoding] { bytes(s).withUnsafeBytes { acceptedEncodings($0) } }

@Test func acceptEncodingQValues() {
    #expect(accepted("gzip, deflate, br") == [.br, .gzip])
    #expect(accepted("gzip") == [.gzip])
    #expect(accepted("br;q=0.5, gzip") == [.gzip, .br])
    #expect(accepted("br;q=0, gzip;q=0.1") == [.gzip])
    #expect(accepted("*") == [.br, .gzip])
    #expect(accepted("*;q=0") == [])
    #expect(accepted("*, gzip;q=0") == [.br])
    #expect(accepted("identity") == [])
    #expect(accepted("") == [])
    #expect(accepted("GZIP ; Q=1.000") == [.gzip])
    #expect(accepted("gzip;q=2") == [])        // malformed: ignored
    #expect(accepted("gzip;q=0.0001") == [])   // malformed: ignored
    #expect(accepted("x-gzip") == [.gzip])
    #expect(accepted("brotli, gzipper") == [])
}

private func range(_ s: String, _ size: Int) -> StaticRange { bytes(s).withUnsafeBytes { StaticRange.parse($0, size: size) } }

@Test func rangeHeaders() {
    #expect(range("bytes=0-99", 1000) == .part(first: 0, last: 99))
    #expect(range("bytes=990-2000", 1000) == .part(first: 990, last: 999))
    #expect(range("bytes=500-", 1000) == .part(first: 500, last: 999))
    #expect(range("bytes=-100", 1000) == .part(first: 900, last: 999))
    #expect(range("bytes=-5000", 1000) == .part(first: 0, last: 999))
    #expect(range("bytes=1000-", 1000) == .unsatisfiable)
    #expect(range("bytes=-0", 1000) == .unsatisfiable)
    #expect(range("bytes=0-0", 0) == .unsatisfiable)
    #expect(range("bytes=5-2", 1000) == .whole)
    #expect(range("bytes=0-1,5-6", 1000) == .whole)   // several ranges: the whole file
    #expect(range("items=0-1", 1000) == .whole)
    #expect(range("bytes=a-b", 1000) == .whole)
    #expect(range("bytes=-", 1000) == .whole)
    #expect(range("bytes=99999999999999999999999999-", 1000) == .unsatisfiable)
}

@Test func imfFixdate() {
    #expect(bytes("Sun, 06 Nov 1994 08:49:37 GMT").withUnsafeBytes { parseIMFFixdate($0) } == 784_111_777)
    #expect(bytes("Sunday, 06-Nov-94 08:49:37 GMT").withUnsafeBytes { parseIMFFixdate($0) } == nil)
    #expect(bytes("Sun Nov  6 08:49:37 1994").withUnsafeBytes { parseIMFFixdate($0) } == nil)
    for t: Int64 in [0, 951_782_400, 1_700_000_000, 4_102_444_800] {
        #expect(HTTPDate.format(unixTime: t).withUnsafeBytes { parseIMFFixdate($0) } == t)
    }
}

private let file = StaticFileFacts(size: 1000, mtimeSeconds: 784_111_777, mtimeNanoseconds: 123, encoding: .identity)

private func decide(_ change: (inout StaticConditions) -> Void) -> StaticAnswer {
    var c = StaticConditions()
    change(&c)
    return StaticAnswer.decide(c, file, etag: file.etag)
}

@Test func conditionalAnswers() {
    let etag = String(decoding: file.etag, as: UTF8.self)
    #expect(etag == "\"3e8-" + String(UInt64(784_111_777_000_000_123), radix: 16) + "\"")
    #expect(decide { _ in }.status == 200)
    #expect(decide { $0.ifNoneMatch = bytes(etag) }.status == 304)
    #expect(decide { $0.ifNoneMatch = bytes("\"x\", W/" + etag) }.status == 304)
    #expect(decide { $0.ifNoneMatch = bytes("*") }.status == 304)
    #expect(decide { $0.ifNoneMatch = bytes("\"other\"") }.status == 200)
    #expect(decide { $0.ifModifiedSince = bytes("Sun, 06 Nov 1994 08:49:37 GMT") }.status == 304)
    #expect(decide { $0.ifModifiedSince = bytes("Sun, 06 Nov 1994 08:49:36 GMT") }.status == 200)
    #expect(decide { $0.ifModifiedSince = bytes("yesterday") }.status == 200)
    // If-None-Match wins over If-Modified-Since.
    #expect(decide { $0.ifNoneMatch = bytes("\"other\""); $0.ifModifiedSince = bytes("Sun, 06 Nov 1994 08:49:37 GMT") }.status == 200)
    #expect(decide { $0.range = bytes("bytes=10-19") } == StaticAnswer(status: 206, offset: 10, count: 10, contentLength: 10, contentRange: .part(first: 10, last: 19)))
    #expect(decide { $0.range = bytes("bytes=10-19"); $0.isHEAD = true }.count == 0)
    #expect(decide { $0.range = bytes("bytes=2000-") }.status == 416)
    #expect(decide { $0.range = bytes("bytes=10-19"); $0.ifRange = bytes(etag) }.status == 206)
    #expect(decide { $0.range = bytes("bytes=10-19"); $0.ifRange = bytes("\"old\"") }.status == 200)
    #expect(decide { $0.range = bytes("bytes=10-19"); $0.ifRange = bytes("W/" + etag) }.status == 200)
    #expect(decide { $0.range = bytes("bytes=10-19"); $0.ifRange = bytes("Sun, 06 Nov 1994 08:49:37 GMT") }.status == 206)
    #expect(decide { $0.range = bytes("bytes=10-19"); $0.ifRange = bytes("Sun, 06 Nov 1994 08:49:38 GMT") }.status == 200)
}

@Test func variantTagsDiffer() {
    var br = file
    br.encoding = .br
    var gz = file
    gz.encoding = .gzip
    #expect(Set([file.etag, br.etag, gz.etag]).count == 3)
}

@Test func contentTypes() {
    #expect(staticContentType(bytes("a/site.CSS")).description == "text/css; charset=utf-8")
    #expect(staticContentType(bytes("x.png")).description == "image/png")
    #expect(staticContentType(bytes("noext")).description == "application/octet-stream")
    #expect(staticContentType(bytes("dir.d/noext")).description == "application/octet-stream")
    #expect(staticContentType(bytes("x.")).description == "application/octet-stream")
}

@Test func responseHead() {
    var out: [UInt8] = []
    let answer = StaticAnswer(status: 206, offset: 10, count: 10, contentLength: 10, contentRange: .part(first: 10, last: 19))
    staticResponseHead(answer, file: file, etag: file.etag, contentType: "text/plain; charset=utf-8",
                       date: bytes("Thu, 01 Jan 2026 00:00:00 GMT"), keepAlive: false, versionMinor: 1, into: &out)
    let text = String(decoding: out, as: UTF8.self)
    #expect(text.hasPrefix("HTTP/1.1 206 Partial Content\r\n"))
    #expect(text.contains("\r\nContent-Range: bytes 10-19/1000\r\n"))
    #expect(text.contains("\r\nContent-Length: 10\r\n"))
    #expect(text.contains("\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\n"))
    #expect(text.contains("\r\nConnection: close\r\n"))
    #expect(text.hasSuffix("\r\n\r\n"))
}
