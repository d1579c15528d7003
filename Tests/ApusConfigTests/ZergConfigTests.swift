import Testing
@testable import ApusConfig

// Sockets handed by a zerg server (`--zerg`), and the zerg server's own settings.

func handedConfig(_ arguments: [String], handed: [Int32]) throws(ConfigError) -> Configuration {
    guard case let .run(config) = try resolveCommand(arguments: arguments, environment: [:],
                                                     fileSystem: FakeFileSystem.standard, handed: handed) else {
        throw ConfigError("not a run")
    }
    return config
}

@Test func handedSocketsAreTheOnlyBindsAndDecidePerConnection() throws {
    let config = try handedConfig(["--zerg", "/run/z.sock", "app"], handed: [7, 8])
    #expect(config.binds == [Bind(address: .fd(7), proto: .auto), Bind(address: .fd(8), proto: .auto)])
    #expect(config.zergSockets == [7, 8])
}

@Test func protocolSetsWhatHandedSocketsSpeak() throws {
    let http = try handedConfig(["--zerg", "/run/z.sock", "--protocol", "HTTP", "app"], handed: [7])
    #expect(http.binds == [Bind(address: .fd(7), proto: .http)])
    let uwsgi = try handedConfig(["--zerg", "/run/z.sock", "--socket-protocol=uwsgi", "app"], handed: [7])
    #expect(uwsgi.binds == [Bind(address: .fd(7), proto: .uwsgi)])
    // own binds keep their protocol, next to the handed ones
    let both = try handedConfig(["--zerg", "/run/z.sock", "--protocol", "http", "--socket", ":9000", "app"], handed: [7])
    #expect(both.binds == [Bind(address: .tcp(host: "0.0.0.0", port: 9000), proto: .uwsgi), Bind(address: .fd(7), proto: .http)])
}

@Test func withoutHandedSocketsTheDefaultBindStays() throws {
    let config = try handedConfig(["--zerg", "/run/z.sock", "app"], handed: [])
    #expect(config.binds == [Bind(address: .tcp(host: "127.0.0.1", port: 8000), proto: .http)])
}

@Test func aZergServerTakesNoAppAndNoZerg() {
    #expect(throws: ConfigError.self) { try handedConfig(["--zerg-server", "/run/z.sock", "app"], handed: []) }
    #expect(throws: ConfigError.self) { try handedConfig(["--zerg-server", "/run/z.sock", "--zerg", "/run/y.sock"], handed: []) }
    #expect(throws: ConfigError.self) { try handedConfig(["--zerg-server", "/run/z.sock", "--reuse-port"], handed: []) }
    #expect(throws: ConfigError.self) { try handedConfig(["--zerg", "/run/z.sock", "--protocol", "fastcgi", "app"], handed: []) }
}

@Test func aZergServerOwnsItsBinds() throws {
    let config = try handedConfig(["--zerg-server", "/run/z.sock", "--http", ":8000", "--socket", "unix:/run/app.sock"], handed: [])
    #expect(config.zergServer == "/run/z.sock")
    #expect(config.app == AppSpec())
    #expect(config.binds == [Bind(address: .tcp(host: "0.0.0.0", port: 8000), proto: .http),
                             Bind(address: .unix(path: "/run/app.sock"), proto: .uwsgi)])
}
