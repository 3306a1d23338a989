public import KamiCore
import KamiCSV
import KamiCrypto
import KamiStore
import KamiXLSX
import Glibc

extension EngineCore {
    /// Writes every code of a plain SKU as CSV to `path` (mode 0600), with the secrets only
    /// when `withSecrets` (and then the export is audited as such). Returns the number of
    /// codes written.
    ///
    /// Everything is checked before anything on disk changes: the SKU, the directory, and the
    /// target, which must not exist unless `replace`, and then must be a regular file (never a
    /// symbolic link, device, fifo, socket or directory). The CSV goes to a temporary file in
    /// the same directory, which is renamed over the target only once it is complete and
    /// synced: a failed export leaves the target as it was.
    func exportCSV(
        sku skuKey: String, to path: String, withSecrets: Bool = false, replace: Bool = false
    ) throws(KamiError) -> Int {
        let sku = try self.sku(key: skuKey)
        let (directory, base) = try EngineCore.exportDirectoryAndName(path)
        try EngineCore.checkExportTarget(path, replace: replace)
        let (fd, temporary) = try EngineCore.createExportTemporary(directory: directory, base: base)
        var fdOpen = true
        defer { if fdOpen { _ = Glibc.close(fd) } }
        // Audited before a byte is written: an export with secrets that fails half-way still
        // leaves its trace, and the partial file is removed.
        do throws(KamiError) {
            _ = try submitAndWait(.setCodes([], audit: AuditEvent(
                "export", subject: "sku:\(sku.key)", detail: "secrets=\(withSecrets) file=\(path)")))
            let count = try writeExport(sku: sku, fd: fd, path: path, withSecrets: withSecrets)
            fdOpen = false
            guard Glibc.close(fd) == 0 else {
                throw KamiError(.unavailable, "close \(temporary): \(String(cString: strerror(errno)))")
            }
            try EngineCore.installExport(temporary, at: path, replace: replace)
            EngineCore.syncDirectory(directory)
            return count
        } catch {
            unlink(temporary)
            throw error
        }
    }

    /// The directory and the file name of an export path, which must name a file.
    static func exportDirectoryAndName(_ path: String) throws(KamiError) -> (String, String) {
        guard !path.isEmpty, !path.hasSuffix("/"), !path.utf8.contains(0) else {
            throw KamiError(.badRequest, "export path \"\(path)\" does not name a file")
        }
        let directory: String
        let base: String
        if let slash = path.lastIndex(of: "/") {
            directory = slash == path.startIndex ? "/" : String(path[..<slash])
            base = String(path[path.index(after: slash)...])
        } else {
            directory = "."
            base = path
        }
        guard base != ".", base != ".." else {
            throw KamiError(.badRequest, "export path \"\(path)\" does not name a file")
        }
        return (directory, base)
    }

    /// Refuses a target that exists and may not be replaced: any target unless `replace`,
    /// and anything that is not a regular file even then.
    static func checkExportTarget(_ path: String, replace: Bool) throws(KamiError) {
        var info = stat()
        if lstat(path, &info) != 0 {
            if errno == ENOENT { return }
            throw KamiError(.badRequest, "cannot check \(path): \(String(cString: strerror(errno)))")
        }
        let kind = info.st_mode & S_IFMT
        guard kind == S_IFREG else {
            throw KamiError(.badRequest,
                            "\(path) exists and is \(fileKindName(kind)), not a regular file; refusing to replace it")
        }
        guard replace else {
            throw KamiError(.badRequest, "\(path) exists; refusing to overwrite it without replace")
        }
    }

    /// "a directory", "a symbolic link", ... for an error message.
    static func fileKindName(_ kind: mode_t) -> String {
        switch kind {
        case S_IFDIR: "a directory"
        case S_IFLNK: "a symbolic link"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFIFO: "a fifo"
        case S_IFSOCK: "a socket"
        default: "not a regular file"
        }
    }

    /// A new, empty file (mode 0600) next to the target, for the export to fill.
    static func createExportTemporary(directory: String, base: String) throws(KamiError) -> (Int32, String) {
        let prefix = (directory == "/" ? "" : directory) + "/." + base + ".kami-export-"
        for _ in 0..<16 {
            let candidate = prefix + String(UInt64.random(in: 0...UInt64.max), radix: 36) + ".tmp"
            let fd = Glibc.open(candidate, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            if fd >= 0 { return (fd, candidate) }
            if errno != EEXIST {
                throw KamiError(.badRequest, "cannot create a file in \(directory): \(String(cString: strerror(errno)))")
            }
        }
        throw KamiError(.unavailable, "cannot create a temporary file in \(directory)")
    }

    /// Moves the finished temporary file to `path`: over an existing regular file when
    /// `replace` (checked again just before), and only where nothing exists otherwise.
    static func installExport(_ temporary: String, at path: String, replace: Bool) throws(KamiError) {
        if replace {
            try checkExportTarget(path, replace: true)
            guard rename(temporary, path) == 0 else {
                throw KamiError(.badRequest, "cannot replace \(path): \(String(cString: strerror(errno)))")
            }
        } else {
            // link(2) fails if anything appeared at `path` meanwhile: never a silent overwrite.
            guard link(temporary, path) == 0 else {
                let reason = errno == EEXIST ? "it exists" : String(cString: strerror(errno))
                throw KamiError(.badRequest, "cannot create \(path): \(reason)")
            }
            unlink(temporary)
        }
    }

    /// Makes the rename durable; a failure only weakens durability, so it is not an error.
    static func syncDirectory(_ directory: String) {
        let fd = Glibc.open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        _ = Glibc.close(fd)
    }

    private func writeExport(sku: Sku, fd: Int32, path: String, withSecrets: Bool) throws(KamiError) -> Int {
        if path.lowercased().hasSuffix(".xlsx") { return try writeWorkbookExport(sku: sku, fd: fd, path: path, withSecrets: withSecrets) }
        let writer = CSVWriter(includeSecrets: withSecrets)
        var buffer: [UInt8] = []
        buffer.reserveCapacity(EngineCore.exportFlushBytes + 4_096)
        writer.writeHeader(into: &buffer)
        var count = 0
        let progress = beginJob(kind: "export", sku: sku.key, path: nil)
        defer { progress.end() }
        try store.forEachCode(sku: sku.id) { (code, state) throws(KamiError) in
            progress.count()
            let row = try exportRow(code, state: state, sku: sku, withSecrets: withSecrets)
            writer.write(row, into: &buffer)
            count += 1
            if buffer.count >= EngineCore.exportFlushBytes { try EngineCore.writeAll(fd, &buffer, path: path) }
        }
        try EngineCore.writeAll(fd, &buffer, path: path)
        guard fsync(fd) == 0 else { throw KamiError(.unavailable, "fsync \(path): \(String(cString: strerror(errno)))") }
        return count
    }

    /// One code as an export row, its secret opened only `withSecrets`.
    private func exportRow(_ code: StoredCode, state: CodeState, sku: Sku, withSecrets: Bool) throws(KamiError) -> CSVExportRow {
        var secret: Secret?
        if withSecrets {
            let sealed = SealedSecret(keyID: code.keyID, nonce: code.nonce, ciphertextAndTag: code.sealed)
            do {
                secret = try sealer.open(sealed, aad: Sealer.associatedData(codeID: code.id, skuID: code.sku))
            } catch {
                throw KamiError(.integrity, "code \(code.id) failed authentication; export stopped")
            }
        }
        return CSVExportRow(
            codeID: code.id, sku: sku.key, state: state.description, cardNumber: code.cardNumber,
            costCents: code.costCents, expiresAtMs: code.expiresAtMs, batch: code.batch, secret: secret)
    }

    /// An export to a path ending in `.xlsx`: the CSV's columns as an Excel workbook.
    private func writeWorkbookExport(sku: Sku, fd: Int32, path: String, withSecrets: Bool) throws(KamiError) -> Int {
        let writer = CSVWriter(includeSecrets: withSecrets)
        var count = 0
        let progress = beginJob(kind: "export", sku: sku.key, path: nil)
        defer { progress.end() }
        let sheet: XLSXWriter
        do throws(XLSXError) {
            sheet = try XLSXWriter(fileDescriptor: fd, path: path, sheetName: sku.key)
            try sheet.add(writer.xlsxHeader)
        } catch {
            throw KamiError(.unavailable, "write \(path): \(error.message)")
        }
        try store.forEachCode(sku: sku.id) { (code, state) throws(KamiError) in
            progress.count()
            let row = try exportRow(code, state: state, sku: sku, withSecrets: withSecrets)
            do throws(XLSXError) {
                try sheet.add(writer.xlsxRow(row))
            } catch {
                throw KamiError(.unavailable, "write \(path): \(error.message)")
            }
            count += 1
        }
        do throws(XLSXError) { try sheet.finish() } catch {
            throw KamiError(.unavailable, "write \(path): \(error.message)")
        }
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
