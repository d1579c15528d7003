// Target `static`: the pure rules of --static-map (Sources/ApusProtocols/StaticFiles.swift).
// The first byte picks a mount and whether the path counts as already decoded (uwsgi's
// PATH_INFO); the rest, up to a newline, is the request path, and what follows the newline
// is a header value given to the Range, Accept-Encoding, If-None-Match and date parsers.
// Checks:
// - a path maps to a file only under the mount, and the file's relative path has no empty,
//   `.` or `..` segment, no NUL, no leading `/`: nothing a path names can leave the directory;
// - mapping `/MOUNT/` + the relative path (escaped where needed) gives the same file back;
// - a satisfiable Range lies inside the file; a parsed date formats and parses back to itself;
// - the same input gives the same result twice.

let staticMounts: [[[UInt8]]] = [[], [Array("static".utf8)], [Array("a".utf8), Array("b".utf8)]]

func fuzzStatic(_ b: UnsafeRawBufferPointer) {
    guard b.count >= 1 else { return }
    let mount = staticMounts[Int(b[0] & 0x7F) % staticMounts.count]
    let decoded = b[0] & 0x80 != 0
    let rest = UnsafeRawBufferPointer(rebasing: b[1...])
    let newline = rest.firstIndex(of: 0x0A) ?? rest.count
    let path = UnsafeRawBufferPointer(rebasing: rest[0..<newline])
    let value = newline < rest.count ? UnsafeRawBufferPointer(rebasing: rest[(newline + 1)...]) : UnsafeRawBufferPointer(start: nil, count: 0)

    let result = StaticPath.resolve(path, mount: mount, decoded: decoded)
    require(StaticPath.resolve(path, mount: mount, decoded: decoded) == result, "two runs differ")
    if case let .file(relative) = result {
        require(!relative.isEmpty && relative.first != 0x2F, "relative path \(relative) is empty or absolute")
        require(!relative.contains(0), "NUL in \(relative)")
        for segment in relative.split(separator: 0x2F, omittingEmptySubsequences: false) {
            require(!segment.isEmpty && !segment.elementsEqual([0x2E]) && !segment.elementsEqual([0x2E, 0x2E]),
                    "segment \(Array(segment)) of \(show(path))")
        }
        // Back again: every byte that is not a plain path byte escaped.
        var again: [UInt8] = []
        for m in mount { again.append(0x2F); again.append(contentsOf: m) }
        again.append(0x2F)
        let hex = Array("0123456789ABCDEF".utf8)
        for c in relative {
            if c == 0x2F || (!decoded && c != 0x25 && c > 0x20 && c < 0x7F) || (decoded && c != 0x2F) { again.append(c) }
            else { again.append(0x25); again.append(hex[Int(c >> 4)]); again.append(hex[Int(c & 15)]) }
        }
        let back = again.withUnsafeBytes { StaticPath.resolve($0, mount: mount, decoded: decoded) }
        require(back == result, "\(show(path)) maps to \(relative), which maps to \(back)")
    }

    let size = Int(b[0]) * 37
    switch StaticRange.parse(value, size: size) {
    case let .part(first, last):
        require(first >= 0 && first <= last && last < size, "range \(first)-\(last) of \(size) for \(show(value))")
    case .whole, .unsatisfiable:
        break
    }
    let encodings = acceptedEncodings(value)
    require(Set(encodings.map { "\($0)" }).count == encodings.count && !encodings.contains(.identity), "encodings \(encodings)")
    if let t = parseIMFFixdate(value) {
        let text = HTTPDate.format(unixTime: t)
        require(text.withUnsafeBytes { parseIMFFixdate($0) } == t, "date \(t) does not come back from \(text)")
    }
    let facts = StaticFileFacts(size: size, mtimeSeconds: Int64(b[0]) << 20, mtimeNanoseconds: 5, encoding: .identity)
    var c = StaticConditions()
    c.range = Array(value)
    c.ifNoneMatch = Array(value)
    let answer = StaticAnswer.decide(c, facts, etag: facts.etag)
    require(answer.offset >= 0 && answer.offset + answer.count <= size, "answer \(answer) past \(size)")
}
