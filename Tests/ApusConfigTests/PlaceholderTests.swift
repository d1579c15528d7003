import Testing
@testable import ApusConfig
@Test func placeholder() { #expect(Configuration().threads == 1) }
