import Foundation
import Glibc
import KamiCore
import KamiCrypto

/// Reads client tokens from the config's `token_file.CLIENT` files and the `token_dir`
/// directory (`CLIENT.token`), and mints new ones into `token_dir`. Never logs a token.
enum TokenStore {
    /// Token files must be 0600 or stricter: group/other access to a token is access to the
    /// storefront protocol.
    static let looseModeBits: mode_t = 0o077

    /// Bytes of randomness in a minted token (hex: twice as many characters).
    static let mintedTokenBytes = 24

    /// client → token for `config`. Throws naming the file when one cannot be used.
    static func load(_ config: DaemonConfig) throws(KamiError) -> [String: String] {
        var tokens: [String: String] = [:]
        let directory = config.tokenDirectoryPath
        if let names = try? FileManager.default.contentsOfDirectory(atPath: directory) {
            for name in names.sorted() where name.hasSuffix(".token") {
                let client = String(name.dropLast(".token".count))
                guard DaemonConfig.isValidClientName(client) else { continue }
                tokens[client] = try read(directory + "/" + name, client: client)
            }
        } else if FileManager.default.fileExists(atPath: directory) {
            throw KamiError(.unavailable, "cannot read token_dir \(directory)")
        }
        for (client, path) in config.tokenFiles {
            tokens[client] = try read(config.resolve(path), client: client)
        }
        return tokens
    }

    /// The token in `path`, trimmed; refuses loose permissions and short tokens.
    static func read(_ path: String, client: String, what: String = "token file") throws(KamiError) -> String {
        let owner = what == "token file" ? "client \(client)" : client
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw KamiError(.unavailable, "cannot read the \(what) of \(owner): \(path): "
                + String(cString: strerror(errno)))
        }
        guard info.st_mode & looseModeBits == 0 else {
            throw KamiError(.badRequest, "\(what) \(path) of \(owner) is readable by group or others "
                + "(mode \(String(info.st_mode & 0o777, radix: 8))); chmod 600 it")
        }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw KamiError(.unavailable, "cannot read the \(what) of \(owner): \(path)")
        }
        let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard token.utf8.count >= ServerLimits.tokenCharactersMin else {
            throw KamiError(.badRequest,
                "\(what) \(path) of \(owner) holds fewer than \(ServerLimits.tokenCharactersMin) characters")
        }
        guard !token.contains(where: { $0.isWhitespace }) else {
            throw KamiError(.badRequest, "\(what) \(path) of \(owner) holds more than one line or word")
        }
        return token
    }

    /// Writes a fresh token for `client` to `<token_dir>/<client>.token` (0600, written to a
    /// temp file, fsync'd and renamed over any old one) and returns it with its path.
    static func mint(client: String, config: DaemonConfig) throws(KamiError) -> (token: String, path: String) {
        guard DaemonConfig.isValidClientName(client) else {
            throw KamiError(.badRequest, "client name must be 1-64 letters, digits, `-`, `_` or `.`")
        }
        let directory = config.tokenDirectoryPath
        if mkdir(directory, 0o700) != 0 && errno != EEXIST {
            throw KamiError(.unavailable, "cannot create token_dir \(directory): \(String(cString: strerror(errno)))")
        }
        let token = SecureRandom.token(bytes: mintedTokenBytes)
        let base = directory.hasPrefix("/") ? directory : FileManager.default.currentDirectoryPath + "/" + directory
        let path = (base as NSString).standardizingPath + "/" + client + ".token"
        try writeAtomically(Array((token + "\n").utf8), to: path)
        return (token, path)
    }

    /// Writes `bytes` to `path` through `path.tmp`, fsyncing the file and the directory.
    static func writeAtomically(_ bytes: [UInt8], to path: String) throws(KamiError) {
        let temp = path + ".tmp"
        unlink(temp)
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw KamiError(.unavailable, "cannot create \(temp): \(String(cString: strerror(errno)))") }
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == bytes.count && synced else {
            let reason = String(cString: strerror(errno))
            unlink(temp)
            throw KamiError(.unavailable, "cannot write \(temp): \(reason)")
        }
        guard rename(temp, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temp)
            throw KamiError(.unavailable, "cannot rename \(temp) to \(path): \(reason)")
        }
        let directory = (path as NSString).deletingLastPathComponent
        let dirFD = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirFD >= 0 {
            fsync(dirFD)
            close(dirFD)
        }
    }
}
