import Testing
@testable import ApusConfig

// `apus.opt` (uWSGI's `uwsgi.opt`) is made from the options as they were given.

private func given(_ args: [String], env: [String: String] = [:], fs: FakeFileSystem = .standard) -> [GivenOptions.Entry] {
    config(args, env: env, fs: fs)?.givenOptions.entries ?? []
}

private func entry(_ name: String, _ value: String?) -> GivenOptions.Entry { GivenOptions.Entry(name: name, value: value) }

@Test func givenOptionsKeepNamesValuesAndOrder() {
    // The application argument is applied first among the command line's.
    #expect(given(["--processes", "4", "-w", "2", "--env", "A=1", "app"]) ==
            [entry("module", "app"), entry("processes", "4"), entry("processes", "2"), entry("env", "A=1")])
}

@Test func givenFlagsAreSetOrNamedByTheirNegation() {
    #expect(given(["--preload", "app"]) == [entry("module", "app"), entry("preload", nil)])
    #expect(given(["--preload=false", "app"]) == [entry("module", "app"), entry("preload", "false")])
    #expect(given(["--no-access-log", "app"]) == [entry("module", "app"), entry("no-access-log", nil)])
    #expect(given(["--no-uwsgi-module", "app"]) == [entry("module", "app"), entry("no-uwsgi-module", nil)])
}

@Test func givenOptionsComeFromEverySourceInPrecedenceOrder() {
    let fs = FakeFileSystem.standard.with(file: "/etc/app.ini", "[uwsgi]\nthreads = 3\n")
    #expect(given(["--ini", "/etc/app.ini", "app"], env: ["APUS_PROCESSES": "2"], fs: fs) ==
            [entry("threads", "3"), entry("processes", "2"), entry("module", "app")])
}

@Test func givenOptionsDoNotMakeConfigurationsDiffer() {
    #expect(config(["--processes", "2", "app"]) == config(["-w", "2", "app"]))
}

@Test func autoreloadIntervalAndGunicornFlag() {
    #expect(config(["--py-autoreload", "2", "app"])?.autoreload == 2)
    #expect(config(["--reload", "app"])?.autoreload == 1)
    #expect(config(["app"])?.autoreload == 0)
}
