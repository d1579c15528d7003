import Testing
@testable import ApusProtocols
@Test func placeholder() { #expect(Bool(true)) }
