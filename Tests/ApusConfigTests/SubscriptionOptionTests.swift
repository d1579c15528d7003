import Testing
@testable import ApusConfig

private let router7000 = DatagramAddress.inet(host: "127.0.0.1", port: 7000)

@Test func subscribeToFormsAsUWSGIWritesThem() {
    let socket = ["--socket", "127.0.0.1:3031", "app"]
    func subs(_ value: String, _ extra: [String] = socket) -> [Subscription]? {
        config(["--subscribe-to", value] + extra)?.subscriptions
    }
    // SERVER:KEY announces the first uwsgi socket; the key keeps its colons
    #expect(subs("127.0.0.1:7000:example.com") == [Subscription(server: router7000, key: "example.com", address: "127.0.0.1:3031")])
    #expect(subs("127.0.0.1:7000:example.com:8080")?.first?.key == "example.com:8080")
    // ADDRESS=SERVER:KEY, KEY,MODIFIER1, a unix router, an IPv6 router, --subscribe2's key=value form
    #expect(subs("10.0.0.5:3031=127.0.0.1:7000:a.example")?.first?.address == "10.0.0.5:3031")
    #expect(subs("127.0.0.1:7000:a.example,5")?.first == Subscription(server: router7000, key: "a.example", address: "127.0.0.1:3031", modifier1: 5))
    #expect(subs("/run/router.sock:a.example")?.first?.server == .unix(path: "/run/router.sock"))
    #expect(subs("[::1]:7000:a.example")?.first?.server == .inet(host: "::1", port: 7000))
    #expect(subs("server=127.0.0.1:7000,key=a.example,weight=3")?.first ==
            Subscription(server: router7000, key: "a.example", address: "127.0.0.1:3031", weight: 3))
    #expect(subs("server=127.0.0.1:7000,key=a.example,addr=/run/app.sock", ["app"])?.first?.address == "/run/app.sock")
    // a unix socket is announced as its path, ":PORT" as it is bound (0.0.0.0:PORT)
    #expect(subs("127.0.0.1:7000:k", ["--socket", "/run/app.sock", "app"])?.first?.address == "/run/app.sock")
    #expect(subs("127.0.0.1:7000:k", ["--socket", ":3031", "app"])?.first?.address == "0.0.0.0:3031")
    // repeatable
    #expect(config(["--subscribe-to", "127.0.0.1:7000:a", "--st", "127.0.0.1:7001:b"] + socket)?.subscriptions.map(\.key) == ["a", "b"])
}

@Test func subscribeToErrors() {
    #expect(failure(["--subscribe-to", "127.0.0.1:7000:k", "--http", ":8000", "app"])?.contains("there is none: add --socket") == true)
    #expect(failure(["--subscribe-to", "127.0.0.1:7000", "--socket", ":1", "app"])?.contains("expected ROUTER_HOST:PORT:KEY") == true)
    #expect(failure(["--subscribe-to", "router.example:7000:k", "--socket", ":1", "app"])?.contains("names are not resolved") == true)
    #expect(failure(["--subscribe-to", "127.0.0.1:99999:k", "--socket", ":1", "app"])?.contains("port must be") == true)
    #expect(failure(["--subscribe-to", "127.0.0.1:7000:k,1,signkey", "--socket", ":1", "app"])?.contains("signed subscriptions are not supported") == true)
    #expect(failure(["--subscribe-to", "127.0.0.1:7000:a b", "--socket", ":1", "app"])?.contains("visible ASCII") == true)
    #expect(failure(["--subscribe-to", "server=127.0.0.1:7000,key=k,sign=x", "--socket", ":1", "app"])?.contains("not supported") == true)
    #expect(failure(["--subscribe-to", "127.0.0.1:7000:k", "--fd", "3", "--socket", "fd://4", "app"])?.contains("inherited socket") == true)
}

@Test func routerCommand() throws {
    guard case let .router(c) = try resolve(["router", "--http", ":8080", "--subscription-server", "127.0.0.1:7000",
                                             "--subscription-algo", "lrc", "--keep-alive", "2"]) else {
        Issue.record("expected .router")
        return
    }
    #expect(c.binds == [tcp("0.0.0.0", 8080)])
    var expected = RouterSettings()
    expected.subscriptionServer = router7000
    expected.algorithm = .leastConnections
    #expect(c.router == expected)
    #expect(c.limits.keepAliveTimeout == 2)
    #expect(failure(["router", "--http", ":8080"])?.contains("--subscription-server ADDR is required") == true)
    #expect(failure(["router", "--subscription-server", "127.0.0.1:7000", "app"])?.contains("takes no application") == true)
    #expect(failure(["router", "--subscription-server", "127.0.0.1:7000", "--processes", "2"]) == "--processes is not an option of apus router")
    #expect(failure(["--subscription-server", "127.0.0.1:7000", "app"]) == "--subscription-server is an option of apus router only")
    #expect(failure(["router", "--subscription-server", "127.0.0.1:7000", "--subscription-algo", "rr"])?.contains("expected wrr or lrc") == true)
    // the environment of the server's options does not reach the router
    #expect(config(["router", "--subscription-server", "127.0.0.1:7000"], env: ["APUS_PROCESSES": "4"]) == routerBaseline())
}
