import Dispatch
import KamiClient
import KamiCore
import KamiProtocol
import Synchronization
import XCTest

/// The pool shared by many threads.
final class PoolTests: XCTestCase {
    func testSixteenThreadsNeverGetACodeTwice() throws {
        let threads = 16
        let ordersPerThread = 30
        let total = threads * ordersPerThread
        let kamid = try Kamid()
        try kamid.stock(count: total + 20)
        let poolSize = 4
        let client = KamiClient(.init(
            endpoint: kamid.tcp, connection: ConnectionOptions(credentials: try kamid.credentials),
            poolSize: poolSize))
        let delivered = Locked<[Int64: String]>([:])
        let failures = Locked<[String]>([])
        DispatchQueue.concurrentPerform(iterations: threads) { thread in
            for index in 0..<ordersPerThread {
                let order = "T\(thread)-\(index)"
                do {
                    let issued = try client.issue(order: order, user: "user\(thread)", sku: "vip", qty: 1,
                                                  paymentRef: "pay-\(order)")
                    // A repeat from another thread's point of view: same order, same codes.
                    let again = try client.issue(order: order, user: "user\(thread)", sku: "vip", qty: 1,
                                                 paymentRef: "pay-\(order)")
                    if again.codes != issued.codes { failures.withLock { $0.append("\(order): repeat differs") } }
                    for code in issued.codes {
                        let previous = delivered.withLock { $0.updateValue(order, forKey: code.codeID) }
                        if let previous {
                            failures.withLock { $0.append("code \(code.codeID) to \(previous) and \(order)") }
                        }
                    }
                } catch {
                    failures.withLock { $0.append("\(order): \(error)") }
                }
            }
        }
        XCTAssertEqual(failures.withLock { $0 }, [])
        XCTAssertEqual(delivered.withLock { $0.count }, total, "every order got its own code")
        let stock = try client.stock(sku: "vip")
        XCTAssertEqual([stock.issued, stock.available], [Int64(total), 20])
        XCTAssertLessThanOrEqual(client.idleConnections, poolSize, "never more connections than the pool size")
        XCTAssertGreaterThan(client.idleConnections, 0)
    }

    func testADeadIdleConnectionIsReplacedWithoutARetry() throws {
        let kamid = try Kamid()
        try kamid.stock(count: 5)
        // No retries: the dead connection must be noticed before anything is sent on it.
        let client = KamiClient(.init(
            endpoint: kamid.tcp, connection: ConnectionOptions(credentials: try kamid.credentials), poolSize: 1,
            retry: .never))
        try client.ping()
        XCTAssertEqual(client.idleConnections, 1)
        XCTAssertEqual(kamid.stop(), 0)
        try kamid.restart()
        XCTAssertNoThrow(try client.ping())
        XCTAssertEqual(client.idleConnections, 1)
        XCTAssertEqual(try client.stock(sku: "vip").available, 5)

        // The same for an operator mutation, which is never retried once sent.
        let admin = KamiClient(.init(endpoint: kamid.unix, retry: .never))
        var skuSet = Request(id: .none, op: .skuSet)
        skuSet.sku = "vip"
        skuSet.priceCents = 1_000
        XCTAssertNoThrow(try admin.send(skuSet).successBody())
        kamid.kill9()
        try kamid.restart()
        skuSet.priceCents = 1_100
        XCTAssertNoThrow(try admin.send(skuSet).successBody())
    }

    func testPoolExhaustionWaitsThenSaysBusy() throws {
        let silent = try SilentListener()
        let client = KamiClient(.init(
            endpoint: .tcp(host: "127.0.0.1", port: silent.port),
            connection: ConnectionOptions(encoding: .json, requestTimeoutMs: 1_500), poolSize: 1, poolWaitMs: 300,
            retry: .never))
        // One call holds the only connection, waiting on a server that never answers...
        let holder = Thread { _ = try? client.ping() }
        holder.start()
        usleep(100_000)
        // ...so a second call waits for it, and gives up after poolWaitMs.
        var error: KamiError?
        let ms = elapsedMs { error = kamiError { try client.ping() } }
        XCTAssertEqual(error?.code, .busy, "\(String(describing: error))")
        XCTAssertTrue(error?.message.contains("stayed in use for 300 ms") ?? false, "\(String(describing: error))")
        XCTAssertGreaterThanOrEqual(ms, 290)
        XCTAssertLessThan(ms, 1_400)
        while !holder.isFinished { usleep(10_000) }
    }

    func testClosedClientRefusesCalls() throws {
        let kamid = try Kamid()
        let client = KamiClient(endpoint: kamid.unix, credentials: nil)
        try client.ping()
        client.close()
        XCTAssertEqual(client.idleConnections, 0)
        XCTAssertEqual(kamiError { try client.ping() }?.code, .unavailable)
    }
}
