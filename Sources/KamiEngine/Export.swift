public import KamiCore
import KamiCSV
import KamiCrypto
import KamiStore
import Glibc

extension Engine {
    /// Writes every code of a plain SKU as CSV to `path` (created new, mode 0600), with the
    /// secrets only when `withSecrets` (and then the export is audited as such). Returns the
    /// number of codes written.
    public func exportCSV(sku skuKey: String, to path: String, withSecrets: Bool = false) throws(KamiError) -> Int {
        let sku = try self.sku(key: skuKey)
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw KamiError(.badRequest, "cannot create \(path): \(String(cString: strerror(errno)))")
        }
        defer { _ = Glibc.close(fd) }
        // Audited before a byte is written: an export with secrets that fails half-way still
        // leaves its trace, and the partial file is removed.
        do throws(KamiError) {
            _ = try submitAndWait(.setCodes([], audit: AuditEvent(
                "export", subject: "sku:\(sku.key)", detail: "secrets=\(withSecrets) file=\(path)")))
            return try writeExport(sku: sku, fd: fd, path: path, withSecrets: withSecrets)
        } catch {
            unlink(path)
            throw error
        }
    }

    private func writeExport(sku: Sku, fd: Int32, path: String, withSecrets: Bool) throws(KamiError) -> Int {
        let writer = CSVWriter(includeSecrets: withSecrets)
        var buffer: [UInt8] = []
        buffer.reserveCapacity(Engine.exportFlushBytes + 4_096)
        writer.writeHeader(into: &buffer)
        var count = 0
        let progress = beginJob(kind: "export", sku: sku.key, path: nil)
        defer { progress.end() }
        try store.forEachCode(sku: sku.id) { (code, state) throws(KamiError) in
            progress.count()
            var secret: Secret?
            if withSecrets {
                let sealed = SealedSecret(keyID: code.keyID, nonce: code.nonce, ciphertextAndTag: code.sealed)
                do {
                    secret = try sealer.open(sealed, aad: Sealer.associatedData(codeID: code.id, skuID: code.sku))
                } catch {
                    throw KamiError(.integrity, "code \(code.id) failed authentication; export stopped")
                }
            }
            writer.write(CSVExportRow(
                codeID: code.id, sku: sku.key, state: state.description, cardNumber: code.cardNumber,
                costCents: code.costCents, expiresAtMs: code.expiresAtMs, batch: code.batch, secret: secret), into: &buffer)
            count += 1
            if buffer.count >= Engine.exportFlushBytes { try Engine.writeAll(fd, &buffer, path: path) }
        }
        try Engine.writeAll(fd, &buffer, path: path)
        guard fsync(fd) == 0 else { throw KamiError(.unavailable, "fsync \(path): \(String(cString: strerror(errno)))") }
        return count
    }

    /// Bytes of CSV gathered before one write(2).
    static let exportFlushBytes = 256 * 1024

    static func writeAll(_ fd: Int32, _ buffer: inout [UInt8], path: String) throws(KamiError) {
        var offset = 0
        while offset < buffer.count {
            let written = buffer.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                throw KamiError(.unavailable, "write \(path): \(String(cString: strerror(errno)))")
            }
            offset += written
        }
        buffer.removeAll(keepingCapacity: true)
    }
}
