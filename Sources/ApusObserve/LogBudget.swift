/// How many lines of one kind a process may log per second. Lines a client can cause at will
/// (a refused connection, a malformed request) go through one, so a flood of them cannot
/// flood the log: past the budget they are counted, and the next line that may go out says
/// how many were left out.
public struct LogBudget: Sendable {
    public let perSecond: Int
    private var windowStart = -Double.infinity
    private var usedInWindow = 0
    private var suppressed = 0

    public init(perSecond: Int) {
        self.perSecond = perSecond
    }

    /// nil: leave the line out. Else the number of lines left out since the last one that
    /// went out (0 usually), to be said in this one.
    public mutating func admit(now: Double) -> Int? {
        if now - windowStart >= 1 {
            windowStart = now
            usedInWindow = 0
        }
        guard usedInWindow < perSecond else {
            suppressed += 1
            return nil
        }
        usedInWindow += 1
        defer { suppressed = 0 }
        return suppressed
    }

    /// `message`, with " (N more like it left out)" when lines were left out before it.
    public static func note(_ message: String, leftOut: Int) -> String {
        leftOut == 0 ? message : "\(message) (\(leftOut) more like it left out of the log)"
    }
}

extension Log {
    /// A warning that goes through `budget`: logged, or counted for the next one that is.
    public static func warning(_ message: @autoclosure () -> String, budget: inout LogBudget, now: Double) {
        guard let leftOut = budget.admit(now: now) else { return }
        warning(LogBudget.note(message(), leftOut: leftOut))
    }
}
