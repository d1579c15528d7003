import Testing
@testable import ApusConfig

private func top(_ arguments: [String], env: [String: String] = [:]) throws -> Command {
    try resolveCommand(arguments: ["top"] + arguments, environment: env, fileSystem: FakeFileSystem())
}

private func topFailure(_ arguments: [String]) -> String? {
    do {
        _ = try top(arguments)
        return nil
    } catch {
        return (error as? ConfigError)?.message
    }
}

@Test func topCommand() throws {
    #expect(try top(["127.0.0.1:9191"]) == .top(address: "127.0.0.1:9191", interval: 1))
    #expect(try top([":9191", "--interval", "0.5"]) == .top(address: ":9191", interval: 0.5))
    #expect(try top(["--interval=2", "unix:/run/s.sock"]) == .top(address: "unix:/run/s.sock", interval: 2))
    #expect(try top(["--", "-odd"]) == .top(address: "-odd", interval: 1))
    // Server settings from the environment do not reach `apus top`.
    #expect(try top([":1"], env: ["APUS_CMD_ARGS": "--interval 9", "APUS_INI": "/nope.ini"]) == .top(address: ":1", interval: 1))
    guard case let .help(text) = try top(["--help"]) else {
        Issue.record("expected help")
        return
    }
    #expect(text.contains("apus top ADDR [--interval S]"))
}

@Test func topCommandErrors() {
    #expect(topFailure([])?.contains("which stats server?") == true)
    #expect(topFailure([":1", ":2"]) == "top: one address only, got \":1\" and \":2\"")
    #expect(topFailure([":1", "--interval"]) == "top: --interval needs a number of seconds")
    #expect(topFailure([":1", "--interval", "0"])?.hasPrefix("top --interval: must be more than 0") == true)
    #expect(topFailure([":1", "--interval", "0.05"]) == "top --interval: must be at least 0.1 seconds, got \"0.05\"")
    #expect(topFailure([":1", "--interval", "x"])?.hasPrefix("top --interval: expected a number") == true)
    #expect(topFailure([":1", "--workers", "2"])?.contains("unknown option \"--workers\"") == true)
}

@Test func aModuleNamedTopIsStillAModule() throws {
    guard case let .run(c) = try resolveCommand(arguments: ["--module", "top"], environment: [:], fileSystem: FakeFileSystem()) else {
        Issue.record("expected .run")
        return
    }
    #expect(c.app.module == "top")
}
