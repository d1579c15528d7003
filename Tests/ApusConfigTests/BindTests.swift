import Testing
@testable import ApusConfig

struct BindCase: Sendable, CustomTestStringConvertible {
    let option: String
    let text: String
    let bind: Bind
    var testDescription: String { "\(option) \(text)" }
}

let validBinds: [BindCase] = [
    BindCase(option: "--http", text: ":8000", bind: tcp("0.0.0.0", 8000)),
    BindCase(option: "--http", text: "127.0.0.1:8000", bind: tcp("127.0.0.1", 8000)),
    BindCase(option: "--http", text: "[::1]:8000", bind: tcp("::1", 8000)),
    BindCase(option: "--http", text: "[::]:80", bind: tcp("::", 80)),
    BindCase(option: "--http", text: "[fe80::1%eth0]:80", bind: tcp("fe80::1%eth0", 80)),
    BindCase(option: "--http", text: "localhost:8000", bind: tcp("localhost", 8000)),
    BindCase(option: "--http", text: "0.0.0.0:8000", bind: tcp("0.0.0.0", 8000)),
    BindCase(option: "--http", text: "web-1.example.com:65535", bind: tcp("web-1.example.com", 65535)),
    BindCase(option: "--http", text: ":1", bind: tcp("0.0.0.0", 1)),
    BindCase(option: "--http", text: "unix:/path/sock", bind: unix("/path/sock")),
    BindCase(option: "--http", text: "/tmp/http.sock", bind: unix("/tmp/http.sock")),
    BindCase(option: "--bind", text: "unix:relative.sock", bind: unix("relative.sock")),
    BindCase(option: "--socket", text: ":3031", bind: tcp("0.0.0.0", 3031, .uwsgi)),
    BindCase(option: "--socket", text: "127.0.0.1:3031", bind: tcp("127.0.0.1", 3031, .uwsgi)),
    BindCase(option: "--socket", text: "unix:/run/app.sock", bind: unix("/run/app.sock", .uwsgi)),
    BindCase(option: "--socket", text: "/tmp/app.sock", bind: unix("/tmp/app.sock", .uwsgi)),
    BindCase(option: "--socket", text: "./app.sock", bind: unix("./app.sock", .uwsgi)),
    BindCase(option: "--uwsgi-socket", text: "../app.sock", bind: unix("../app.sock", .uwsgi)),
    BindCase(option: "-s", text: "[::1]:3031", bind: tcp("::1", 3031, .uwsgi)),
]

@Test(arguments: validBinds)
func validBind(_ c: BindCase) {
    #expect(config([c.option, c.text, "app"])?.binds == [c.bind])
}

let invalidBinds: [(String, String)] = [
    ("8000", #"expected HOST:PORT, :PORT, [IPV6]:PORT or unix:PATH, got "8000" (did you mean ":8000"?)"#),
    ("localhost", #"expected HOST:PORT, :PORT, [IPV6]:PORT or unix:PATH, got "localhost""#),
    ("app.sock", #"expected HOST:PORT, :PORT, [IPV6]:PORT or unix:PATH, got "app.sock""#),
    (":0", #"port must be between 1 and 65535, got "0""#),
    (":65536", #"port must be between 1 and 65535, got "65536""#),
    (":080000", #"port must be between 1 and 65535, got "080000""#),
    (":abc", #"port must be between 1 and 65535, got "abc""#),
    (":", #"port must be between 1 and 65535, got """#),
    ("localhost:", #"port must be between 1 and 65535, got """#),
    ("::1:8000", #"IPv6 addresses need brackets, e.g. [::1]:8000, got "::1:8000""#),
    ("[::1]8000", #"missing ":PORT" in "[::1]8000""#),
    ("[::1]", #"missing ":PORT" in "[::1]""#),
    ("[::1:8000", #"missing "]" after the IPv6 address in "[::1:8000""#),
    ("[1.2.3.4]:80", #"invalid IPv6 address "1.2.3.4" in "[1.2.3.4]:80""#),
    ("unix:", #"missing socket path after "unix:""#),
    ("bad_host:80", #"invalid host "bad_host" in "bad_host:80""#),
    ("256.1.1.1:80", #"invalid host "256.1.1.1" in "256.1.1.1:80""#),
    ("1.2.3:80", #"invalid host "1.2.3" in "1.2.3:80""#),
    ("-web:80", #"invalid host "-web" in "-web:80""#),
    ("a..b:80", #"invalid host "a..b" in "a..b:80""#),
]

@Test func invalidBindsNameTheOption() {
    for (text, message) in invalidBinds {
        #expect(failure(["--http=\(text)", "app"]) == "--http: \(message)")
        #expect(failure(["-s" + text, "app"]) == "-s: \(message)")
    }
}

@Test func duplicateBindsAreRemoved() {
    let c = config(["app", "--http", ":8000", "--http", "0.0.0.0:8000", "-b", "127.0.0.1:8000",
                    "--socket", ":8000", "-s", "/tmp/a.sock", "-s", "unix:/tmp/a.sock"])
    #expect(c?.binds == [tcp("0.0.0.0", 8000), tcp("127.0.0.1", 8000), tcp("0.0.0.0", 8000, .uwsgi), unix("/tmp/a.sock", .uwsgi)])
}
