import Foundation
import Testing
@testable import ApusProtocols

/// A file of the `Corpus/uwsgi` or `Corpus/proxy` folder; the name starts
/// with the expected outcome (`valid-`, `incomplete-`, `invalid-`).
struct ProtocolCorpusFile: Sendable, CustomTestStringConvertible {
    var name: String
    var bytes: [UInt8]
    var testDescription: String { name }
}

func loadProtocolCorpus(_ folder: String, suffix: String) -> [ProtocolCorpusFile] {
    let dir = corpusDirectory.appendingPathComponent(folder)
    let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
    return names.filter { $0.hasSuffix(suffix) }.sorted().compactMap { name in
        guard let data = FileManager.default.contents(atPath: dir.appendingPathComponent(name).path) else { return nil }
        return ProtocolCorpusFile(name: name, bytes: [UInt8](data))
    }
}

let uwsgiCorpus = loadProtocolCorpus("uwsgi", suffix: ".uwsgi")
let proxyCorpus = loadProtocolCorpus("proxy", suffix: ".proxy")

/// The name used in `invalid-<name>-...uwsgi` files.
func uwsgiErrorName(_ e: UWSGIParseError) -> String {
    switch e {
    case .badModifier: return "badModifier"
    case .varsTooLarge: return "varsTooLarge"
    case .truncatedVar: return "truncatedVar"
    case .tooManyVars: return "tooManyVars"
    case .badContentLength: return "badContentLength"
    case .bodyTooLarge: return "bodyTooLarge"
    case .emptyKey: return "emptyKey"
    }
}

@Test func protocolCorporaAreLargeEnough() {
    #expect(uwsgiCorpus.filter { $0.name.hasPrefix("valid-") }.count >= 15)
    #expect(uwsgiCorpus.filter { $0.name.hasPrefix("invalid-") }.count >= 15)
    #expect(proxyCorpus.filter { $0.name.hasPrefix("valid-") }.count >= 10)
    #expect(proxyCorpus.filter { $0.name.hasPrefix("invalid-") }.count >= 10)
}

@Test(arguments: uwsgiCorpus)
func uwsgiCorpusFile(_ file: ProtocolCorpusFile) {
    let (r, h) = parseUWSGI(file.bytes)
    if file.name.hasPrefix("valid-") {
        #expect(r == .complete)
        // the file is exactly one request: head and body
        #expect(r == .complete && h.headLength + h.contentLength == file.bytes.count)
        if file.name.contains("nginx") { #expect(h.method != nil && h.pathInfo != nil && h.requestURI != nil && h.queryString != nil) }
        if file.bytes.count <= 4096 {
            let d = firstUWSGIDecision(file.bytes)
            #expect(d.result == .complete && d.prefix == h.headLength)
        }
    } else if file.name.hasPrefix("incomplete-") {
        // the head is not complete, or the body is shorter than CONTENT_LENGTH
        #expect(r == .incomplete || (r == .complete && h.headLength + h.contentLength > file.bytes.count))
    } else if file.name.hasPrefix("invalid-") {
        let expected = file.name.dropFirst("invalid-".count).prefix { $0 != "-" && $0 != "." }
        guard case .failure(let e) = r else { Issue.record("\(file.name): \(r)"); return }
        #expect(uwsgiErrorName(e) == String(expected))
        if file.bytes.count <= 4096 { #expect(firstUWSGIDecision(file.bytes).result == r) }
    } else {
        Issue.record("unknown naming scheme: \(file.name)")
    }
}

@Test(arguments: proxyCorpus)
func proxyCorpusFile(_ file: ProtocolCorpusFile) {
    let r = parseProxy(file.bytes)
    if file.name.hasPrefix("valid-") {
        guard case .complete(let h) = r else { Issue.record("\(file.name): \(r)"); return }
        // the rest of the file is one complete HTTP request
        #expect(processStream(Array(file.bytes[h.length...])) == .requests(1))
        #expect(firstProxyDecision(file.bytes).prefix == h.length)
    } else if file.name.hasPrefix("incomplete-") {
        #expect(r == .incomplete)
    } else if file.name.hasPrefix("invalid-") {
        #expect(isProxyFailure(r), "\(r)")
        #expect(firstProxyDecision(file.bytes).result == r)
    } else {
        Issue.record("unknown naming scheme: \(file.name)")
    }
}
