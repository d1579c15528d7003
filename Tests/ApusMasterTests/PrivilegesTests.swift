import Testing
@testable import ApusMaster

/// A user database of three users and four groups.
private struct Directory: UserDirectory {
    let users: [String: (uid: UInt32, gid: UInt32)] = ["www": (33, 33), "app": (1001, 1001), "42": (4242, 4242)]
    let groups: [String: UInt32] = ["www": 33, "app": 1001, "web": 2000, "root": 0]

    func user(named name: String) throws(PrivilegeFailure) -> (uid: UInt32, gid: UInt32)? { users[name] }
    func user(id: UInt32) throws(PrivilegeFailure) -> (name: String, gid: UInt32)? {
        users.first { $0.value.uid == id }.map { ($0.key, $0.value.gid) }
    }
    func group(named name: String) throws(PrivilegeFailure) -> UInt32? { groups[name] }
    func group(id: UInt32) throws(PrivilegeFailure) -> String? { groups.first { $0.value == id }?.key }
}

private func resolve(_ uid: String?, _ gid: String?) throws(PrivilegeFailure) -> Identity? {
    try Identity.resolve(uid: uid, gid: gid, in: Directory())
}

private let root = Credentials(uid: 0, euid: 0, suid: 0, gid: 0, egid: 0, sgid: 0, groups: [0, 4, 27])
private func user(_ uid: UInt32, _ gid: UInt32, groups: [UInt32]? = nil) -> Credentials {
    Credentials(uid: uid, euid: uid, suid: uid, gid: gid, egid: gid, sgid: gid, groups: groups ?? [gid])
}

@Test func digitsAreANumberAndAnythingElseAName() throws {
    #expect(try Principal.parse("0", option: "--uid") == .number(0))
    #expect(try Principal.parse("1001", option: "--uid") == .number(1001))
    #expect(try Principal.parse("www-data", option: "--uid") == .name("www-data"))
    #expect(try Principal.parse("+12", option: "--uid") == .name("+12"))
    #expect(try Principal.parse("1e3", option: "--gid") == .name("1e3"))
    #expect(throws: PrivilegeFailure("--uid: 4294967295 is out of range")) { try Principal.parse("4294967295", option: "--uid") }
    #expect(throws: PrivilegeFailure("--gid: 99999999999 is out of range")) { try Principal.parse("99999999999", option: "--gid") }
}

@Test func aUserBringsItsPrimaryGroupUnlessAGroupIsGiven() throws {
    #expect(try resolve(nil, nil) == nil)
    #expect(try resolve("www", nil) == Identity(uid: 33, gid: 33, user: "www", group: "www"))
    #expect(try resolve("www", "web") == Identity(uid: 33, gid: 2000, user: "www", group: "web"))
    #expect(try resolve("www", "2000") == Identity(uid: 33, gid: 2000, user: "www", group: "web"))
    #expect(try resolve("www", "3000") == Identity(uid: 33, gid: 3000, user: "www", group: ""))
    // A number is a number even when a user has that name (uid 42 has no entry here).
    #expect(throws: PrivilegeFailure("--uid: uid 42 has no passwd entry to take its group from; give --gid")) { try resolve("42", nil) }
    #expect(try resolve("1001", nil) == Identity(uid: 1001, gid: 1001, user: "app", group: "app"))
    #expect(try resolve(nil, "web") == Identity(uid: nil, gid: 2000, user: "", group: "web"))
}

@Test func aNameThatIsNotThereIsOneLineNamingTheOption() throws {
    #expect(throws: PrivilegeFailure(#"--uid: no such user "nobodyx""#)) { try resolve("nobodyx", nil) }
    #expect(throws: PrivilegeFailure(#"--gid: no such group "nogroupx""#)) { try resolve("www", "nogroupx") }
    // A uid without a passwd entry has no group to take: the current one is root's.
    #expect(throws: PrivilegeFailure("--uid: uid 5000 has no passwd entry to take its group from; give --gid")) { try resolve("5000", nil) }
    #expect(try resolve("5000", "web") == Identity(uid: 5000, gid: 2000, user: "", group: "web"))
}

@Test func rootDropsToTheUserAndItsOneGroup() throws {
    let www = Identity(uid: 33, gid: 33, user: "www", group: "www")
    #expect(try PrivilegeDrop.decide(nil, current: root) == PrivilegeDrop.none)
    #expect(try PrivilegeDrop.decide(www, current: root) == .change(www))
    let group = Identity(uid: nil, gid: 2000, group: "web")
    #expect(try PrivilegeDrop.decide(group, current: root) == .change(group))
    // Root that already has the group but also others still drops them.
    #expect(try PrivilegeDrop.decide(group, current: user(0, 2000, groups: [2000, 0])) == .change(group))
    #expect(try PrivilegeDrop.decide(group, current: user(0, 2000)) == .already(group))
}

@Test func aProcessThatIsAlreadyTheUserHasNothingToDo() throws {
    let app = Identity(uid: 1001, gid: 1001, user: "app", group: "app")
    #expect(try PrivilegeDrop.decide(app, current: user(1001, 1001)) == .already(app))
    // Not root, it cannot drop the supplementary groups it was started with: not asked.
    #expect(try PrivilegeDrop.decide(app, current: user(1001, 1001, groups: [1001, 2000])) == .already(app))
    let group = Identity(uid: nil, gid: 1001, group: "app")
    #expect(try PrivilegeDrop.decide(group, current: user(1001, 1001)) == .already(group))
}

@Test func aProcessThatIsNotRootCannotBecomeAnyoneElse() {
    let www = Identity(uid: 33, gid: 33, user: "www", group: "www")
    #expect(throws: PrivilegeFailure("--uid: cannot become user www (uid 33), group www (gid 33): apus runs as uid 1001, not root")) {
        try PrivilegeDrop.decide(www, current: user(1001, 1001))
    }
    let otherGroup = Identity(uid: 1001, gid: 2000, user: "app", group: "web")
    #expect(throws: PrivilegeFailure("--gid: cannot become user app (uid 1001), group web (gid 2000): apus runs as gid 1001, uid 1001, not root")) {
        try PrivilegeDrop.decide(otherGroup, current: user(1001, 1001))
    }
    // A saved uid of root is not being that user: setuid would keep a way back.
    var halfDropped = user(1001, 1001)
    halfDropped.suid = 0
    #expect(throws: PrivilegeFailure.self) { try PrivilegeDrop.decide(Identity(uid: 1001, gid: 1001), current: halfDropped) }
}

@Test func onlyAStartMayChangePrivileges() {
    let www = Identity(uid: 33, gid: 33, user: "www", group: "www")
    #expect(PrivilegeDrop.none.refusedOnReload == nil)
    #expect(PrivilegeDrop.already(www).refusedOnReload == nil)
    #expect(PrivilegeDrop.change(www).refusedOnReload
            == "--uid: privileges change only at start, not on a reload or an upgrade in place: restart apus to run as user www (uid 33), group www (gid 33)")
    #expect(PrivilegeDrop.change(Identity(uid: nil, gid: 2000)).refusedOnReload?.hasPrefix("--gid: ") == true)
}

@Test func theSystemDatabaseKnowsRootAndNotAMadeUpName() throws {
    let system = SystemUsers()
    #expect(try system.user(named: "root").map { [$0.uid, $0.gid] } == [0, 0])
    #expect(try system.user(id: 0)?.name == "root")
    #expect(try system.group(named: "root") == 0)
    #expect(try system.user(named: "no-such-user-of-apus") == nil)
    #expect(try system.group(named: "no-such-group-of-apus") == nil)
}
