// IMF-fixdate formatting (RFC 9110 section 5.6.7), e.g.
// `Sun, 06 Nov 1994 08:49:37 GMT`, from a Unix time in seconds, with pure
// integer arithmetic (proleptic Gregorian calendar, no time zones).

public enum HTTPDate {
    /// Length of an IMF-fixdate.
    public static let length = 29

    /// Times are clamped to 0001-01-01T00:00:00Z ... 9999-12-31T23:59:59Z.
    public static let minUnixTime: Int64 = -62_135_596_800
    public static let maxUnixTime: Int64 = 253_402_300_799

    /// The IMF-fixdate for `unixTime` (seconds since 1970-01-01T00:00:00Z).
    public static func format(unixTime: Int64) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(length)
        append(unixTime: unixTime, to: &out)
        return out
    }

    /// Appends the 29 bytes of the IMF-fixdate for `unixTime` to `out`.
    public static func append(unixTime: Int64, to out: inout [UInt8]) {
        let t = min(max(unixTime, minUnixTime), maxUnixTime)
        // floor division into days and seconds of the day
        var days = t / 86_400
        var secs = t % 86_400
        if secs < 0 { secs += 86_400; days -= 1 }
        // 1970-01-01 was a Thursday (0 = Sunday)
        var wd = (days + 4) % 7
        if wd < 0 { wd += 7 }
        // civil date from day count (era-based algorithm, eras of 400 years)
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)

        let names: StaticString = "SunMonTueWedThuFriSat"
        let months: StaticString = "JanFebMarAprMayJunJulAugSepOctNovDec"
        let w = Int(wd) * 3
        out.append(names.utf8Start[w])
        out.append(names.utf8Start[w + 1])
        out.append(names.utf8Start[w + 2])
        out.append(0x2C)
        out.append(0x20)
        appendDecimal(Int(day), minimumDigits: 2, to: &out)
        out.append(0x20)
        let m = Int(month - 1) * 3
        out.append(months.utf8Start[m])
        out.append(months.utf8Start[m + 1])
        out.append(months.utf8Start[m + 2])
        out.append(0x20)
        appendDecimal(Int(year / 100), minimumDigits: 2, to: &out)
        appendDecimal(Int(year % 100), minimumDigits: 2, to: &out)
        out.append(0x20)
        appendDecimal(Int(secs / 3_600), minimumDigits: 2, to: &out)
        out.append(0x3A)
        appendDecimal(Int(secs / 60 % 60), minimumDigits: 2, to: &out)
        out.append(0x3A)
        appendDecimal(Int(secs % 60), minimumDigits: 2, to: &out)
        out.append(0x20)
        out.append(0x47)
        out.append(0x4D)
        out.append(0x54)
    }
}

/// Caches the formatted date and reformats only when the second changes.
public struct HTTPDateCache: Sendable {
    /// The second `bytes` was formatted for (`Int64.min` before the first update).
    public private(set) var unixTime: Int64 = .min
    /// The IMF-fixdate for `unixTime` (empty before the first update).
    public private(set) var bytes: [UInt8] = []

    public init() {
        bytes.reserveCapacity(HTTPDate.length)
    }

    /// Makes `bytes` current for `unixTime`; returns true if it was reformatted.
    @discardableResult
    public mutating func update(unixTime: Int64) -> Bool {
        if unixTime == self.unixTime { return false }
        self.unixTime = unixTime
        bytes.removeAll(keepingCapacity: true)
        HTTPDate.append(unixTime: unixTime, to: &bytes)
        return true
    }
}
