import Foundation
import Testing
@testable import ApusWorker

/// The raw HTTP corpus of the parser tests (Tests/ApusProtocolsTests/Corpus): every file
/// goes through a connection machine as a worker would take it, whole and byte by byte.
struct CorpusFile: Sendable, CustomTestStringConvertible {
    var name: String
    var bytes: [UInt8]
    /// nil for a valid file, else the status the file must be refused with.
    var expectedStatus: Int?
    var testDescription: String { name }
}

let corpusDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("ApusProtocolsTests/Corpus")

let corpus: [CorpusFile] = {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: corpusDirectory.path)) ?? []
    return names.filter { $0.hasSuffix(".http") }.sorted().compactMap { name in
        guard let data = FileManager.default.contents(atPath: corpusDirectory.appendingPathComponent(name).path) else { return nil }
        let status = name.hasPrefix("invalid-") ? Int(name.dropFirst("invalid-".count).prefix(3)) ?? -1 : nil
        return CorpusFile(name: name, bytes: [UInt8](data), expectedStatus: status)
    }
}()

@Test func theCorpusIsThere() {
    #expect(corpus.count >= 40)
}

@Test(arguments: corpus)
func corpusFileWhole(_ file: CorpusFile) {
    var h = Harness()
    h.receive(file.bytes)
    if let status = file.expectedStatus {
        #expect(h.events.last == .reject(status), "\(h.events)")
    } else {
        #expect(!h.requests.isEmpty)
        if h.ended {
            // Connection: close or HTTP/1.0: the connection ends after the last answer.
            #expect(h.events.last == .closeAfterPending, "\(h.events)")
            #expect(!h.machine.keepAlive)
        } else {
            #expect(h.buffer.isEmpty, "a valid file ends at the end of its last request")
        }
        #expect(!h.events.contains(.sendContinue), "the whole body was here: no 100")
    }
}

/// Byte by byte: the same requests with the same bodies, and the same verdict.
@Test(arguments: corpus.filter { $0.bytes.count <= 8192 })
func corpusFileByteByByte(_ file: CorpusFile) {
    var whole = Harness()
    whole.receive(file.bytes)
    var trickle = Harness()
    for b in file.bytes where !trickle.ended { trickle.receive([b]) }
    #expect(trickle.requests == whole.requests)
    #expect(trickle.events.last == whole.events.last || whole.events.last.map { if case .request = $0 { true } else { false } } == true)
    if let status = file.expectedStatus { #expect(trickle.events.last == .reject(status)) }
}
