import Testing
@testable import ApusObserve

/// A title area over a buffer of `capacity` bytes, pre-filled with "#" to see what is written.
private func withArea(_ capacity: Int, _ body: (TitleArea, UnsafeMutableBufferPointer<UInt8>) -> Void) {
    let buf = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: capacity)
    buf.initialize(repeating: UInt8(ascii: "#"))
    body(TitleArea(base: buf.baseAddress, capacity: capacity), buf)
    buf.deallocate()
}

private func put(_ area: TitleArea, _ text: String, at offset: Int = 0) -> Int {
    Array(text.utf8).withUnsafeBytes { area.put($0, at: offset) }
}

@Test func aTitleIsWrittenAndEndsWithANul() {
    withArea(32) { area, buf in
        area.end(at: put(area, "apus: master [app]"))
        #expect(area.text == "apus: master [app]")
        #expect(buf[18] == 0)
        #expect(buf[19] == UInt8(ascii: "#"))  // past the title: left alone
    }
}

@Test func aShorterTitleBlanksWhatTheLongerOneLeft() {
    withArea(64) { area, buf in
        area.end(at: put(area, "apus: worker 1 gen 1 busy GET /long/path"))
        area.end(at: put(area, "apus: worker 1 gen 1 idle"))
        #expect(area.text == "apus: worker 1 gen 1 idle")
        #expect(Array(buf[25..<41]) == [UInt8](repeating: 0, count: 16))
    }
}

@Test func aLongTitleIsCutToTheRoomKeepingTheLastNul() {
    withArea(10) { area, buf in
        let n = put(area, "apus: master [a long name]")
        #expect(n == 9)
        area.end(at: n)
        #expect(area.text == "apus: mas")
        #expect(buf[9] == 0)
        #expect(area.put(UInt8(ascii: "x"), at: 9) == 9)
    }
}

@Test func decimals() {
    withArea(32) { area, _ in
        var n = area.putDecimal(0, at: 0)
        n = area.put(32, at: n)
        n = area.putDecimal(1024, at: n)
        n = area.put(32, at: n)
        n = area.putDecimal(-7, at: n)
        n = area.put(32, at: n)
        area.end(at: area.putDecimal(Int.max, at: n))
        #expect(area.text == "0 1024 -7 9223372036854775807")
    }
}

@Test func noAreaTakesEveryWriteAsANoOp() {
    let area = TitleArea(base: nil, capacity: 100)
    #expect(area.room == 0)
    #expect(put(area, "apus: master") == 0)
    area.end(at: 0)
    #expect(area.text == "")
}

@Test func titlesStartWithThePrefixThenApus() {
    #expect(ProcessTitle.compose(prefix: "", "master [app]") == "apus: master [app]")
    #expect(ProcessTitle.compose(prefix: "web ", "zygote gen 2") == "web apus: zygote gen 2")
}
