import KamiCore
import KamiCrypto
import Foundation
import Glibc

/// The audit chain's head, kept outside the database: `kami.audit-head` beside it holds the
/// last entry's sequence number and hash with a MAC under the audit key. Whoever can rewrite
/// only the database cannot cut the chain's tail unseen (the anchor names a later entry), nor
/// rewrite it from the anchored entry on (that entry's hash differs), nor forge a new anchor.
///
/// The writer publishes the chain's tail after every durable batch (a lock and two stores);
/// a thread of this type writes it to the file at most once per `intervalMs`, atomically
/// (temporary file, fsync, rename, fsync of the directory), and once more at close. So the
/// anchor lags the chain by at most about a second and is never ahead of what is on disk.
final class AuditAnchor: Sendable {
    /// The file's name in the data directory.
    static let fileName = "kami.audit-head"
    /// How often the head is written at most, in milliseconds: a second of lag is what a cut
    /// of the tail could hide, traded against one small fsync'd file write per second.
    static let intervalMs: Int64 = 1_000
    private static let magic = "kami-audit-head v1"

    /// What the file says.
    enum Reading: Sendable, Equatable {
        case missing
        case unreadable(String)
        case head(seq: Int64, hash: [UInt8])
    }

    let path: String
    private let key: AuditKey
    private let latest = Locked<(seq: Int64, hash: [UInt8], written: Bool)>((0, [], true))
    private let wake = ConditionLock()
    private let state = Locked<(stopping: Bool, stopped: Bool)>((false, false))
    private let finished = ConditionLock()

    init(directory: String, key: AuditKey) {
        path = directory + "/" + AuditAnchor.fileName
        self.key = key
    }

    /// Records the chain's tail (called on the writer thread after a durable batch or job).
    func publish(seq: Int64, hash: [UInt8]) {
        latest.withLock { current in
            if current.seq != seq || current.hash != hash { current = (seq, hash, false) }
        }
    }

    /// Writes the file now with `seq` and `hash` (at open, before the writer starts).
    func writeNow(seq: Int64, hash: [UInt8]) throws(StoreError) {
        latest.withLock { $0 = (seq, hash, true) }
        try write(seq: seq, hash: hash)
    }

    /// Starts the thread that writes published heads.
    func start() {
        let thread = Thread { [self] in
            while !state.withLock({ $0.stopping }) {
                flush()
                wake.withLock {
                    if !state.withLock({ $0.stopping }) {
                        wake.wait(untilMonotonicNs: monotonicNs() + UInt64(AuditAnchor.intervalMs) * 1_000_000)
                    }
                }
            }
            flush()
            finished.withLock { state.withLock { $0.stopped = true } }
            finished.broadcast()
        }
        thread.name = "kami-audit-anchor"
        thread.start()
    }

    /// Writes the last published head and stops the thread (after the writer stopped).
    func stop() {
        wake.withLock { state.withLock { $0.stopping = true } }
        wake.broadcast()
        finished.withLock {
            while !state.withLock({ $0.stopped }) { finished.wait() }
        }
    }

    private func flush() {
        guard let head = latest.withLock({ $0.written ? nil : ($0.seq, $0.hash) }) else { return }
        // A failed write (full disk) leaves the older anchor, which is behind, never wrong;
        // the next pass tries again.
        if (try? write(seq: head.0, hash: head.1)) != nil {
            latest.withLock { if $0.seq == head.0 && $0.hash == head.1 { $0.written = true } }
        }
    }

    private func macInput(seq: Int64, hash: [UInt8]) -> [UInt8] {
        var bytes = Array(AuditAnchor.magic.utf8)
        appendBigEndian(&bytes, UInt64(bitPattern: seq))
        bytes.append(contentsOf: hash)
        return bytes
    }

    private func write(seq: Int64, hash: [UInt8]) throws(StoreError) {
        let line = "\(AuditAnchor.magic) \(seq) \(Hex.encode(hash)) \(Hex.encode(key.mac(macInput(seq: seq, hash: hash))))\n"
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw anchorError("cannot create \(temporary)") }
        let bytes = Array(line.utf8)
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == bytes.count, synced else { throw anchorError("cannot write \(temporary)") }
        guard rename(temporary, path) == 0 else { throw anchorError("cannot rename \(temporary)") }
        let directory = open((path as NSString).deletingLastPathComponent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directory >= 0 {
            _ = fsync(directory)
            close(directory)
        }
    }

    private func anchorError(_ what: String) -> StoreError {
        .directory(path: path, reason: what + ": " + String(cString: strerror(errno)))
    }

    /// Reads and authenticates the file.
    func read() -> Reading {
        guard let data = FileManager.default.contents(atPath: path) else {
            return access(path, F_OK) == 0 ? .unreadable("cannot read \(path)") : .missing
        }
        guard data.count < 512, let text = String(data: data, encoding: .utf8) else {
            return .unreadable("\(path) is not a head line")
        }
        let parts = text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ").map(String.init)
        guard parts.count == 5, "\(parts[0]) \(parts[1])" == AuditAnchor.magic, let seq = Int64(parts[2]), seq >= 0,
            let hash = hexBytes(parts[3]), hash.count == 32, let mac = hexBytes(parts[4])
        else { return .unreadable("\(path) is not a head line") }
        guard key.verify(mac, of: macInput(seq: seq, hash: hash)) else {
            return .unreadable("its MAC does not match (forged, or written under another master key)")
        }
        return .head(seq: seq, hash: hash)
    }
}

private func hexBytes(_ text: String) -> [UInt8]? {
    let chars = Array(text.utf8)
    guard chars.count % 2 == 0 else { return nil }
    func value(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        default: nil
        }
    }
    var out: [UInt8] = []
    out.reserveCapacity(chars.count / 2)
    var index = 0
    while index < chars.count {
        guard let high = value(chars[index]), let low = value(chars[index + 1]) else { return nil }
        out.append(high << 4 | low)
        index += 2
    }
    return out
}
