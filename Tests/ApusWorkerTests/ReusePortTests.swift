import Testing
@testable import ApusWorker

/// `ReusePort`'s reading of /proc/net/tcp and tcp6, as values (the lines as Linux 6.18 writes
/// them; addresses as a little-endian host prints them).
@Suite struct ReusePortTests {
    static let tcp = """
          sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
           0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4401 1 000000004472d1d6 100 0 0 10 0
           1: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4523 1 00000000a8c1e2f0 100 0 0 10 0
           2: 00000000:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4600 1 00000000b3a4868c 100 0 0 10 0
           3: 0100007F:1F41 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4700 1 00000000c3a4868c 100 0 0 10 0
           4: 0100007F:1F40 0100007F:A1F6 01 00000000:00000000 00:00000000 00000000     0        0 4801 1 00000000d3a4868c 20 4 30 10 -1
           5: 0100007F:1F40 0100007F:A1F8 06 00000000:00000000 03:0000151F 00000000     0        0 0 3 00000000b3a4868c
           6: 0100007F:1F40 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4900 2 00000000e3a4868c 0

        """

    @Test func procAddressIPv4() {
        #expect(ReusePort.procAddress([127, 0, 0, 1], port: 8000) == "0100007F:1F40")
        #expect(ReusePort.procAddress([0, 0, 0, 0], port: 80) == "00000000:0050")
        #expect(ReusePort.procAddress([10, 1, 2, 254], port: 65535) == "FE02010A:FFFF")
    }

    @Test func procAddressIPv6() {
        var loopback = [UInt8](repeating: 0, count: 16)
        loopback[15] = 1
        #expect(ReusePort.procAddress(loopback, port: 8000) == "00000000000000000000000001000000:1F40")
        let doc: [UInt8] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x2a]
        #expect(ReusePort.procAddress(doc, port: 443) == "B80D012000000000000000002A000000:01BB")
    }

    @Test func countsOtherListenersOnTheSameAddressOnly() {
        // two listen on 127.0.0.1:8000; 0.0.0.0:8000 and :8001 are other addresses; an
        // established, a TIME_WAIT and a closed socket on the address do not listen
        #expect(ReusePort.countListening(in: Self.tcp, address: "0100007F:1F40", excludingInode: 999) == 2)
        #expect(ReusePort.countListening(in: Self.tcp, address: "0100007F:1F40", excludingInode: 4523) == 1)
        #expect(ReusePort.countListening(in: Self.tcp, address: "00000000:1F40", excludingInode: 999) == 1)
        #expect(ReusePort.countListening(in: Self.tcp, address: "00000000:1F40", excludingInode: 4600) == 0)
        #expect(ReusePort.countListening(in: Self.tcp, address: "0100007F:1F42", excludingInode: 0) == 0)
    }

    @Test func countsInTcp6AndIgnoresCaseAndJunk() {
        let tcp6 = """
              sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
               0: 00000000000000000000000001000000:1F40 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5100 1 0000000012345678 100 0 0 10 0
               1: 00000000000000000000000001000000:1f40 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5101 1 0000000012345679 100 0 0 10 0
               2: truncated line 0A
            """
        #expect(ReusePort.countListening(in: tcp6, address: "00000000000000000000000001000000:1F40", excludingInode: 5100) == 1)
        #expect(ReusePort.countListening(in: tcp6, address: "00000000000000000000000001000000:1F40", excludingInode: 1) == 2)
        #expect(ReusePort.countListening(in: "", address: "0100007F:1F40", excludingInode: 1) == 0)
    }
}
