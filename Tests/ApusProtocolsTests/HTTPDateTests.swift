import Testing
@testable import ApusProtocols

func date(_ t: Int64) -> String { String(decoding: HTTPDate.format(unixTime: t), as: UTF8.self) }

@Test(arguments: [
    (Int64(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT"),
    (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
    (86_399, "Thu, 01 Jan 1970 23:59:59 GMT"),
    (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),      // leap year divisible by 400
    (951_868_800, "Wed, 01 Mar 2000 00:00:00 GMT"),
    (1_078_012_800, "Sun, 29 Feb 2004 00:00:00 GMT"),
    (4_107_542_400, "Mon, 01 Mar 2100 00:00:00 GMT"),    // 2100 is not a leap year
    (4_107_542_399, "Sun, 28 Feb 2100 23:59:59 GMT"),
    (2_147_483_647, "Tue, 19 Jan 2038 03:14:07 GMT"),
    (2_147_483_648, "Tue, 19 Jan 2038 03:14:08 GMT"),
    (1_700_000_000, "Tue, 14 Nov 2023 22:13:20 GMT"),
    (1_709_164_800, "Thu, 29 Feb 2024 00:00:00 GMT"),
    (1_735_689_599, "Tue, 31 Dec 2024 23:59:59 GMT"),
    (32_503_680_000, "Wed, 01 Jan 3000 00:00:00 GMT"),
    (-1, "Wed, 31 Dec 1969 23:59:59 GMT"),
    (-86_400, "Wed, 31 Dec 1969 00:00:00 GMT"),
    (253_402_300_799, "Fri, 31 Dec 9999 23:59:59 GMT"),
    (Int64.max, "Fri, 31 Dec 9999 23:59:59 GMT"),
    (Int64.min, "Mon, 01 Jan 0001 00:00:00 GMT"),
])
func httpDate(_ t: Int64, _ expected: String) {
    #expect(date(t) == expected)
    #expect(HTTPDate.format(unixTime: t).count == HTTPDate.length)
}

@Test func httpDateEveryDayForFourHundredYears() {
    // consecutive days are consecutive dates: weekday cycles, day/month/year advance
    var previous = date(0)
    var t: Int64 = 86_400
    var count = 0
    while t < 86_400 * 146_097 {
        let s = date(t)
        #expect(s.count == 29 && s.hasSuffix(" 00:00:00 GMT"))
        if s == previous { Issue.record("repeated \(s)"); break }
        previous = s
        t += 86_400
        count += 1
    }
    #expect(previous == "Wed, 31 Dec 2369 00:00:00 GMT")
}

@Test func httpDateCache() {
    var cache = HTTPDateCache()
    #expect(cache.bytes.isEmpty)
    let first = cache.update(unixTime: 784_111_777)
    #expect(first)
    #expect(String(decoding: cache.bytes, as: UTF8.self) == "Sun, 06 Nov 1994 08:49:37 GMT")
    let same = cache.update(unixTime: 784_111_777)
    #expect(!same)
    let next = cache.update(unixTime: 784_111_778)
    #expect(next)
    #expect(String(decoding: cache.bytes, as: UTF8.self) == "Sun, 06 Nov 1994 08:49:38 GMT")
    #expect(cache.unixTime == 784_111_778)
}
