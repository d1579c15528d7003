import Testing
@testable import ApusObserve

@Test func admitsUpToTheBudgetEachSecond() {
    var b = LogBudget(perSecond: 3)
    #expect(b.admit(now: 10.0) == 0)
    #expect(b.admit(now: 10.1) == 0)
    #expect(b.admit(now: 10.2) == 0)
    #expect(b.admit(now: 10.3) == nil)
    #expect(b.admit(now: 10.9) == nil)
    // A new second: the first line says how many were left out, then the count starts over.
    #expect(b.admit(now: 11.05) == 2)
    #expect(b.admit(now: 11.1) == 0)
}

@Test func theCountSurvivesQuietSeconds() {
    var b = LogBudget(perSecond: 1)
    #expect(b.admit(now: 0) == 0)
    #expect(b.admit(now: 0.5) == nil)
    #expect(b.admit(now: 60) == 1)
    #expect(b.admit(now: 60.2) == nil)
}

@Test func noteSaysWhatWasLeftOut() {
    #expect(LogBudget.note("bad request", leftOut: 0) == "bad request")
    #expect(LogBudget.note("bad request", leftOut: 5) == "bad request (5 more like it left out of the log)")
}
