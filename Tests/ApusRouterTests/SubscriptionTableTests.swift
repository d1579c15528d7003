import Testing
import ApusConfig
import ApusProtocols
@testable import ApusRouter
