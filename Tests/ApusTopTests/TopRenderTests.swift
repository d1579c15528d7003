import Testing
@testable import ApusTop

@Test func rendersAnApusServerMidReload() throws {
    let before = try TopFixtures.snapshot(TopFixtures.apusDocument.replacing("\"requests\": 100,", with: "\"requests\": 90,")
        .replacing("\"requests\": 1107,", with: "\"requests\": 1087,"))
    let now = try TopFixtures.snapshot(TopFixtures.apusDocument)
    let view = TopView(previous: TopSample(before, at: 10), current: TopSample(now, at: 12))
    let lines = TopRender.lines(view, title: "apus top 127.0.0.1:9191", width: 100)
    #expect(lines == [
        "apus top 127.0.0.1:9191",
        "apus 0.1.0  master 4100  generation 3  RELOAD graceful in progress -> generation 4",
        "req/s 10.0  requests 1107  workers 1/2 ready  listen queue 0  reloads 2",
        "",
        " ID      PID  GEN STATUS STATE         REQS    REQ/S   AVG ms  LAST ms  RSS MiB  REQUEST",
        "  1     4101    3 busy   retiring       100      5.0     1.50     2.25     30.0  GET /slow?x=1 1.3s",
        "  2     4102    4 idle   ready            7      0.0     0.80     0.70     20.0",
    ])
}

@Test func rendersUWSGIWithoutExtras() throws {
    let view = TopView(previous: nil, current: TopSample(try TopFixtures.snapshot(TopFixtures.uwsgiDocument), at: 0))
    let lines = TopRender.lines(view, title: "apus top :1717", width: 120)
    #expect(lines == [
        "apus top :1717",
        "version 2.0.31  master 7981",
        "req/s -  requests 1  workers 2/2 ready  listen queue 0",
        "",
        " ID      PID  GEN STATUS STATE         REQS    REQ/S   AVG ms  LAST ms  RSS MiB  REQUEST",
        "  1     7983    - busy   -                0        -     0.00        -      0.0  GET /slow 2.0s",
        "  2     7984    - idle   -                1        -     0.15        -      0.0",
    ])
}

@Test func linesFitTheWidth() throws {
    let view = TopView(previous: nil, current: TopSample(try TopFixtures.snapshot(TopFixtures.apusDocument), at: 0))
    let lines = TopRender.lines(view, title: "apus top 127.0.0.1:9191 every 1.0s", width: 40)
    #expect(lines.allSatisfy { $0.count <= 40 })
    #expect(lines[5] == "  1     4101    3 busy   retiring")
    #expect(TopRender.lines(view, title: "t", width: 0).allSatisfy { $0.isEmpty })
}

@Test func stoppingAndNotReadyShow() throws {
    var s = try TopFixtures.snapshot(TopFixtures.apusDocument)
    s.apus?.reload = nil
    s.apus?.incoming = nil
    s.apus?.stopping = true
    s.apus?.ready = false
    let lines = TopRender.lines(TopView(previous: nil, current: TopSample(s, at: 0)), title: "t", width: 200)
    #expect(lines[1] == "apus 0.1.0  master 4100  generation 3  STOPPING  not ready")
    s.apus?.incoming = 5
    let starting = TopRender.lines(TopView(previous: nil, current: TopSample(s, at: 0)), title: "t", width: 200)
    #expect(starting[1].contains("starting generation 5"))
}

@Test func serverTextCannotDriveTheTerminal() throws {
    var s = try TopFixtures.snapshot(TopFixtures.apusDocument)
    s.workers[0].inProgress = [InProgress(request: "GET /\u{1B}[2J\u{9B}x\r\n", seconds: nil)]
    s.version = "apus\u{7}"
    let lines = TopRender.lines(TopView(previous: nil, current: TopSample(s, at: 0)), title: "t", width: 200)
    #expect(lines[5].hasSuffix("GET /?[2J?x??"))
    #expect(lines[1].hasPrefix("apus?  master"))
    #expect(!lines.joined().unicodeScalars.contains { $0.value < 0x20 || ($0.value >= 0x7F && $0.value < 0xA0) })
}

@Test func unreachableScreen() {
    #expect(TopRender.unreachable(title: "apus top :1", reason: "cannot reach 127.0.0.1:1: Connection refused\u{1B}", width: 30)
            == ["apus top :1", "cannot reach 127.0.0.1:1: Conn"])
}

@Test func wideCharactersCountTwoColumns() throws {
    #expect(TopRender.columns("GET /") == 5)
    #expect(TopRender.columns("日本") == 4)
    #expect(TopRender.columns("😀") == 2)
    #expect(TopRender.columns("e\u{301}") == 1)
    #expect(TopRender.columns("\u{301}") == 0)
    #expect(TopRender.columns("\u{200B}") == 0)
    #expect(TopRender.fit("ab日本", 4) == "ab日")
    #expect(TopRender.fit("ab日本", 3) == "ab")
    var s = try TopFixtures.snapshot(TopFixtures.apusDocument)
    s.workers[0].inProgress = [InProgress(request: "GET /日本語/ページ", seconds: nil)]
    for width in [95, 96, 97, 100, 104] {
        let lines = TopRender.lines(TopView(previous: nil, current: TopSample(s, at: 0)), title: "t", width: width)
        #expect(lines.allSatisfy { TopRender.columns($0) <= width })
    }
}
