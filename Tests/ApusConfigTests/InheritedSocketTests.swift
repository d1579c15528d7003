import Testing
@testable import ApusConfig

func fd(_ n: Int32, _ proto: Bind.Kind = .http) -> Bind {
    Bind(address: .fd(n), proto: proto)
}

// MARK: LISTEN_* as systemd sets them

struct ActivationCase: Sendable, CustomTestStringConvertible {
    let env: [String: String]
    let pid: Int32
    let sockets: [InheritedSocket]
    var testDescription: String { "\(env.sorted { $0.key < $1.key }) pid \(pid)" }
}

let activationCases: [ActivationCase] = [
    ActivationCase(env: [:], pid: 7, sockets: []),
    ActivationCase(env: ["LISTEN_FDS": "2"], pid: 7, sockets: []),
    ActivationCase(env: ["LISTEN_PID": "", "LISTEN_FDS": "2"], pid: 7, sockets: []),
    // Meant for another process (a parent that did not unset them): not ours.
    ActivationCase(env: ["LISTEN_PID": "6", "LISTEN_FDS": "2"], pid: 7, sockets: []),
    ActivationCase(env: ["LISTEN_PID": "7", "LISTEN_FDS": "0"], pid: 7, sockets: []),
    ActivationCase(env: ["LISTEN_PID": "7", "LISTEN_FDS": "1"], pid: 7,
                   sockets: [InheritedSocket(fd: 3)]),
    ActivationCase(env: ["LISTEN_PID": "7", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "web:uwsgi"], pid: 7,
                   sockets: [InheritedSocket(fd: 3, name: "web"), InheritedSocket(fd: 4, name: "uwsgi")]),
    ActivationCase(env: ["LISTEN_PID": "7", "LISTEN_FDS": "3", "LISTEN_FDNAMES": "a::c", "LISTEN_PIDFDID": "99"], pid: 7,
                   sockets: [InheritedSocket(fd: 3, name: "a"), InheritedSocket(fd: 4), InheritedSocket(fd: 5, name: "c")]),
]

@Test(arguments: activationCases)
func activation(_ c: ActivationCase) throws {
    #expect(try SocketActivation.parse(environment: c.env, pid: c.pid) == c.sockets)
}

@Test func malformedActivation() {
    let cases: [([String: String], String)] = [
        (["LISTEN_PID": "x7", "LISTEN_FDS": "1"], #"LISTEN_PID: expected a process id, got "x7""#),
        (["LISTEN_PID": "7"], #"LISTEN_FDS: expected a number of descriptors, got """#),
        (["LISTEN_PID": "7", "LISTEN_FDS": "-1"], #"LISTEN_FDS: expected a number of descriptors, got "-1""#),
        (["LISTEN_PID": "7", "LISTEN_FDS": "99999999"], #"LISTEN_FDS: expected a number of descriptors, got "99999999""#),
        (["LISTEN_PID": "7", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "web"],
         #"LISTEN_FDNAMES: 1 names for LISTEN_FDS=2 descriptors ("web")"#),
    ]
    for (env, message) in cases {
        #expect(throws: ConfigError(message)) { try SocketActivation.parse(environment: env, pid: 7) }
    }
}

// MARK: fd://N and --fd

@Test func fdBinds() {
    #expect(config(["--http", "fd://3", "app"])?.binds == [fd(3)])
    #expect(config(["--bind", "fd://0", "app"])?.binds == [fd(0)])
    #expect(config(["--socket", "fd://4", "app"])?.binds == [fd(4, .uwsgi)])
    #expect(config(["--fd", "3", "--fd=5", "app"])?.binds == [fd(3), fd(5)])
    #expect(config(["--fd", "3", "--http", "fd://3", "--http", ":8000", "app"])?.binds == [fd(3), tcp("0.0.0.0", 8000)])
    #expect(config(["app"], env: ["APUS_FD": "3,4"])?.binds == [fd(3), fd(4)])
    #expect(fd(3).description == "http://fd:3")
    #expect(fd(4, .uwsgi).description == "uwsgi://fd:4")
}

@Test func badFDs() {
    #expect(failure(["--fd", "x", "app"]) == #"--fd: expected a file descriptor number such as 3, got "x""#)
    #expect(failure(["--fd", "", "app"]) == #"--fd: expected a file descriptor number such as 3, got """#)
    #expect(failure(["--http", "fd://", "app"]) == #"--http: expected a file descriptor number such as 3, got """#)
    #expect(failure(["--socket", "fd://99999999", "app"]) == #"--socket: expected a file descriptor number such as 3, got "99999999""#)
    #expect(failure(["--http", "fd://3x", "app"]) == #"--http: expected a file descriptor number such as 3, got "3x""#)
}

// MARK: systemd's sockets among the binds

func activated(_ arguments: [String], _ inherited: [InheritedSocket], env: [String: String] = [:]) -> [Bind]? {
    do {
        guard case let .run(c) = try resolveCommand(arguments: arguments, environment: env,
                                                    fileSystem: FakeFileSystem.standard, inherited: inherited) else { return nil }
        return c.binds
    } catch {
        Issue.record("unexpected error: \(error.message)")
        return nil
    }
}

@Test func activatedSocketsAreServed() {
    let web = InheritedSocket(fd: 3, name: "web", address: .tcp(host: "0.0.0.0", port: 8000))
    let uwsgi = InheritedSocket(fd: 4, name: "uwsgi", address: .unix(path: "/run/app.sock"))
    let unnamed = InheritedSocket(fd: 5)
    // Alone: HTTP, or uwsgi when named so; no default bind.
    #expect(activated(["app"], [web, uwsgi, unnamed]) == [fd(3), fd(4, .uwsgi), fd(5)])
    #expect(activated(["app"], [web], env: ["PORT": "9000"]) == [fd(3)])
    // Next to other binds.
    #expect(activated(["--http", ":9000", "app"], [web]) == [tcp("0.0.0.0", 9000), fd(3)])
    // `--socket fd://3` makes it uwsgi; `--http fd://4` makes the one named uwsgi HTTP.
    #expect(activated(["--socket", "fd://3", "app"], [web]) == [fd(3, .uwsgi)])
    #expect(activated(["--http", "fd://4", "app"], [uwsgi]) == [fd(4)])
    // A bind at the socket's address adopts it with its protocol (as uWSGI matches them).
    #expect(activated(["--socket", ":8000", "app"], [web]) == [fd(3, .uwsgi)])
    #expect(activated(["--http", "unix:/run/app.sock", "--http", ":8000", "app"], [uwsgi, web]) == [fd(4), fd(3)])
    #expect(activated(["--http", "127.0.0.1:8000", "app"], [web]) == [tcp("127.0.0.1", 8000), fd(3)])
    // The same sockets resolve to the same binds every time (graceful reloads).
    #expect(activated(["app"], [web, uwsgi]) == activated(["app"], [web, uwsgi]))
}

@Test func activationVariablesForTheNextImageParseBackToTheSameSockets() throws {
    let sockets = [InheritedSocket(fd: 3, name: "web"), InheritedSocket(fd: 4, name: nil), InheritedSocket(fd: 5, name: "uwsgi")]
    let lines = SocketActivation.environment(for: sockets, pid: 42)
    #expect(lines == ["LISTEN_PID=42", "LISTEN_FDS=3", "LISTEN_FDNAMES=web::uwsgi"])
    var env: [String: String] = [:]
    for line in lines {
        let parts = line.split(separator: "=", maxSplits: 1).map(String.init)
        env[parts[0]] = parts[1]
    }
    #expect(try SocketActivation.parse(environment: env, pid: 42) == sockets)
    #expect(SocketActivation.environment(for: [], pid: 42).isEmpty)
}
