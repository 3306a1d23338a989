import Dispatch
import KamiCore

/// Puts the orders read at boot into memory on two threads beside the one reading them: the
/// order table on one, the users' index and counts on the other, each in the order read, at
/// most `ahead` batches behind the reader (memory stays bounded however many orders there are).
final class BootLoader: Sendable {
    private let table = DispatchQueue(label: "kami-boot-orders")
    private let users = DispatchQueue(label: "kami-boot-users")
    private let window: DispatchSemaphore
    private let group = DispatchGroup()

    init(ahead: Int) { window = DispatchSemaphore(value: 2 * ahead) }

    /// Hands `batch` to both threads; waits while `ahead` batches are still being put away.
    func submit(_ batch: [Order], table load: @escaping @Sendable ([Order]) -> Void,
                users count: @escaping @Sendable ([Order]) -> Void) {
        guard !batch.isEmpty else { return }
        window.wait()
        window.wait()
        table.async(group: group) { [window] in
            load(batch)
            window.signal()
        }
        users.async(group: group) { [window] in
            count(batch)
            window.signal()
        }
    }

    /// Waits until every batch is in.
    func finish() { group.wait() }
}
