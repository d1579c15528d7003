// TopView → lines of text of a fixed width, pure. The terminal loop adds the escapes that
// place them; the plain (non-terminal) output prints them as they are.

public enum TopRender {
    /// The column header of the worker table.
    static let columns = " ID      PID  GEN STATUS STATE         REQS    REQ/S   AVG ms  LAST ms  RSS MiB  REQUEST"

    /// The screen for `view`: a title line, two summary lines, a blank line, the column
    /// header, one row per worker. Each line is at most `width` characters.
    public static func lines(_ view: TopView, title: String, width: Int) -> [String] {
        var out = [title]
        // uWSGI's version is a bare number ("2.0.31"); Apus's says "apus 0.1.0".
        var first = [view.version.map { $0.first?.isNumber == true ? "version \($0)" : $0 } ?? "server"]
        if let pid = view.masterPid { first.append("master \(pid)") }
        if let generation = view.generation { first.append("generation \(generation)") }
        if let reload = view.reload {
            first.append("RELOAD \(reload) in progress" + (view.incoming.map { " -> generation \($0)" } ?? ""))
        } else if let incoming = view.incoming {
            first.append("starting generation \(incoming)")
        }
        if view.stopping == true { first.append("STOPPING") }
        if view.ready == false { first.append("not ready") }
        out.append(first.joined(separator: "  "))

        var second = ["req/s " + (view.requestsPerSecond.map { formatFixed($0, 1) } ?? "-")]
        second.append("requests \(view.requests)")
        second.append("workers \(view.workersReady)/\(view.workersWanted) ready")
        if let queue = view.listenQueue { second.append("listen queue \(queue)") }
        if let reloads = view.reloads { second.append("reloads \(reloads)") }
        out.append(second.joined(separator: "  "))
        out.append("")
        out.append(columns)
        for row in view.rows { out.append(line(row)) }
        return out.map { fit(clean($0), width) }
    }

    /// The screen while the server cannot be read: the title and why.
    public static func unreachable(title: String, reason: String, width: Int) -> [String] {
        [title, clean(reason)].map { fit($0, width) }
    }

    static func line(_ r: TopRow) -> String {
        pad(String(r.id), 3) + " " + pad(String(r.pid), 8) + " " + pad(r.generation.map(String.init) ?? "-", 4)
            + " " + padRight(r.status, 6) + " " + padRight(r.state ?? "-", 9)
            + " " + pad(String(r.requests), 8) + " " + pad(r.requestsPerSecond.map { formatFixed($0, 1) } ?? "-", 8)
            + " " + pad(r.averageMs.map { formatFixed($0, 2) } ?? "-", 8)
            + " " + pad(r.lastMs.map { formatFixed($0, 2) } ?? "-", 8)
            + " " + pad(formatFixed(r.rssMiB, 1), 8) + "  " + r.inProgress
    }

    /// Right-aligned in `n` characters (longer text is kept whole; the columns padded hold
    /// numbers and the server's short words).
    static func pad(_ s: String, _ n: Int) -> String {
        s.count >= n ? s : String(repeating: " ", count: n - s.count) + s
    }

    static func padRight(_ s: String, _ n: Int) -> String {
        s.count >= n ? s : s + String(repeating: " ", count: n - s.count)
    }

    /// At most `width` terminal columns (see `columns`), trailing spaces dropped.
    static func fit(_ s: String, _ width: Int) -> String {
        var used = 0
        var end = s.startIndex
        for i in s.indices {
            let w = columns(s[i])
            if used + w > width { break }
            used += w
            end = s.index(after: i)
        }
        var t = s[..<end]
        while t.last == " " { t = t.dropLast() }
        return String(t)
    }

    /// The columns a terminal gives `s`.
    public static func columns(_ s: String) -> Int { s.reduce(0) { $0 + columns($1) } }

    /// The columns of one character, as terminals count them (wcwidth's rules, roughly): 2
    /// for East Asian wide and fullwidth characters and emoji, 0 for a lone combining mark
    /// or format character, 1 otherwise. A line of server text may hold any of them.
    static func columns(_ c: Character) -> Int {
        guard let u = c.unicodeScalars.first else { return 0 }
        if u.isASCII { return 1 }
        let p = u.properties
        switch p.generalCategory {
        case .nonspacingMark, .enclosingMark, .format: return 0
        default: break
        }
        if p.isEmojiPresentation || c.unicodeScalars.contains(where: { $0.value == 0xFE0F }) { return 2 }
        switch u.value {
        case 0x1100...0x115F, 0x2E80...0x303E, 0x3041...0x33FF, 0x3400...0x4DBF, 0x4E00...0x9FFF,
             0xA000...0xA4CF, 0xAC00...0xD7A3, 0xF900...0xFAFF, 0xFE30...0xFE4F, 0xFF00...0xFF60,
             0xFFE0...0xFFE6, 0x20000...0x2FFFD, 0x30000...0x3FFFD:
            return 2
        default:
            return 1
        }
    }

    /// Text from the server never reaches the terminal as control characters (an escape
    /// sequence in a request line would otherwise be run by the terminal): each becomes '?'.
    static func clean(_ s: String) -> String {
        guard s.unicodeScalars.contains(where: isControl) else { return s }
        var out = String.UnicodeScalarView()
        for u in s.unicodeScalars { out.append(isControl(u) ? "?" : u) }
        return String(out)
    }

    static func isControl(_ u: Unicode.Scalar) -> Bool {
        u.value < 0x20 || (u.value >= 0x7F && u.value < 0xA0)
    }
}
