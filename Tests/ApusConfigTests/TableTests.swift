import Foundation
import Testing
@testable import ApusConfig

@Test func noDuplicateNamesAliasesOrVariables() {
    let specs = OptionSpec.all
    let longs = specs.flatMap(\.longNames)
    #expect(longs.count == Set(longs).count, "duplicate long names: \(duplicates(longs))")
    let shorts = specs.flatMap(\.shortAliases)
    #expect(shorts.count == Set(shorts).count, "duplicate short names: \(duplicates(shorts))")
    let variables = specs.compactMap(\.environmentVariable)
    #expect(variables.count == Set(variables).count, "duplicate variables: \(duplicates(variables))")
}

private func duplicates<T: Hashable>(_ items: [T]) -> [T] {
    var seen = Set<T>()
    return items.filter { !seen.insert($0).inserted }
}

@Test func namesAreLowercaseWithDashes() {
    for spec in OptionSpec.all {
        for name in spec.longNames {
            #expect(name.allSatisfy { $0.isLowercase || $0.isNumber || $0 == "-" }, "\(name)")
        }
        #expect(!spec.help.isEmpty)
        #expect(spec.takesValue == !spec.valueName.isEmpty, "\(spec.name)")
    }
}

@Test func environmentVariablesDeriveFromNames() {
    let byName = Dictionary(uniqueKeysWithValues: OptionSpec.all.map { ($0.name, $0) })
    #expect(byName["shutdown-timeout"]?.environmentVariable == "APUS_SHUTDOWN_TIMEOUT")
    #expect(byName["processes"]?.environmentVariable == "APUS_PROCESSES")
    #expect(byName["ini"]?.environmentVariable == "APUS_INI")
    #expect(byName["help"]?.environmentVariable == nil)
    #expect(byName["version"]?.environmentVariable == nil)
}

@Test func helpAndVersion() throws {
    for args in [["--help"], ["-h"], ["app", "--processes", "2", "--help"], ["--http", ":1", "-h"]] {
        #expect(try resolve(args) == .help(helpText()), "\(args)")
    }
    for args in [["--version"], ["-V"], ["app", "-V"]] {
        #expect(try resolve(args) == .version, "\(args)")
    }
    // After "--", "--help" is an argument, not an option.
    #expect(failure(["--", "--help"]) == #"application argument: expected MODULE[:CALLABLE] such as app.wsgi or hello:application, got "--help""#)
}

@Test func helpMentionsEveryOption() {
    let help = helpText()
    for spec in OptionSpec.all {
        for name in spec.longNames { #expect(help.contains("--\(name)"), "--\(name)") }
        for letter in spec.shortAliases { #expect(help.contains("-\(letter)"), "-\(letter)") }
        if let variable = spec.environmentVariable { #expect(help.contains("[env: \(variable)")) }
        if let d = spec.defaultText { #expect(help.contains("[default: \(d)]"), "\(spec.name)") }
        #expect(help.contains(spec.section.rawValue + ":"))
    }
    #expect(help.hasPrefix("Usage: apus [OPTIONS] MODULE[:CALLABLE]\n"))
    #expect(help.contains("  --processes N  (also -w, -p, --workers)\n"))
    #expect(help.contains("      [default: 1] [env: APUS_PROCESSES]\n"))
    #expect(help.contains("      [env: APUS_PYTHONPATH, :-separated]\n"))
    #expect(help.contains("      [env: APUS_HTTP, comma-separated]\n"))
    #expect(help.contains("  --access-log  (off: --no-access-log, --disable-logging)\n"))
    #expect(help.split(separator: "\n").allSatisfy { $0.count <= 80 })
}

@Test func markdownMentionsEveryOption() {
    let markdown = optionsMarkdown()
    for spec in OptionSpec.all {
        for name in spec.longNames { #expect(markdown.contains("`--\(name)"), "--\(name)") }
        if let variable = spec.environmentVariable { #expect(markdown.contains("`\(variable)`")) }
        #expect(markdown.contains("## \(spec.section.rawValue)\n"))
    }
    for entry in uwsgiSurveyKeys {
        for key in entry.split(separator: "/") { #expect(markdown.contains("| `\(key)` |"), "\(key)") }
    }
}

/// docs/options.md must be exactly what optionsMarkdown() generates.
/// To regenerate it: APUS_WRITE_DOCS=1 swift test --filter ApusConfigTests
@Test func docsAreUpToDate() throws {
    let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let docs = root.appendingPathComponent("docs/options.md")
    let generated = optionsMarkdown()
    if ProcessInfo.processInfo.environment["APUS_WRITE_DOCS"] == "1" {
        try FileManager.default.createDirectory(at: docs.deletingLastPathComponent(), withIntermediateDirectories: true)
        try generated.write(to: docs, atomically: true, encoding: .utf8)
    }
    let current = try? String(contentsOf: docs, encoding: .utf8)
    #expect(current == generated,
            "docs/options.md is out of date with the option table; regenerate it with: APUS_WRITE_DOCS=1 swift test --filter ApusConfigTests")
}
