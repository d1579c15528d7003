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

    /// Right-aligned in `n` columns (longer text is kept whole).
    static func pad(_ s: String, _ n: Int) -> String {
        s.count >= n ? s : String(repeating: " ", count: n - s.count) + s
    }

    static func padRight(_ s: String, _ n: Int) -> String {
        s.count >= n ? s : s + String(repeating: " ", count: n - s.count)
    }

    /// At most `width` characters, trailing spaces dropped.
    static func fit(_ s: String, _ width: Int) -> String {
        var t = Substring(s.count > width ? String(s.prefix(max(0, width))) : s)
        while t.last == " " { t = t.dropLast() }
        return String(t)
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
