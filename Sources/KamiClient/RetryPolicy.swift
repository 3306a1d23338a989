import KamiProtocol

/// How `KamiClient` repeats a request that failed for a reason that may pass: a transport
/// failure (reset, timeout, kamid restarting), a refused connect, or BUSY.
///
/// Retries sleep an exponential backoff with jitter between `backoffMsInitial` and
/// `backoffMsMax`: each wait is drawn from the upper half of the current step, so that
/// storefront workers that all lost kamid at the same moment do not all come back in
/// the same millisecond.
public struct RetryPolicy: Sendable, Hashable {
    /// Retries after the first attempt, in 0...`ClientLimits.retryAttemptsMax`.
    public var attempts: Int
    /// The first backoff, in milliseconds (at least 1).
    public var backoffMsInitial: Int
    /// The largest backoff, in milliseconds (at least `backoffMsInitial`).
    public var backoffMsMax: Int

    /// A policy; the defaults are `ClientLimits`'.
    public init(
        attempts: Int = ClientLimits.retryAttemptsDefault,
        backoffMsInitial: Int = ClientLimits.retryBackoffMsInitialDefault,
        backoffMsMax: Int = ClientLimits.retryBackoffMsMaxDefault
    ) {
        self.attempts = attempts
        self.backoffMsInitial = backoffMsInitial
        self.backoffMsMax = backoffMsMax
    }

    /// No retries: every failure goes straight to the caller.
    public static let never = RetryPolicy(attempts: 0)

    /// Traps on values out of range: a programmer error.
    func check() {
        precondition((0...ClientLimits.retryAttemptsMax).contains(attempts),
                     "retry attempts \(attempts) outside 0...\(ClientLimits.retryAttemptsMax)")
        precondition(backoffMsInitial >= 1 && backoffMsInitial <= backoffMsMax,
                     "backoff \(backoffMsInitial)...\(backoffMsMax) ms is not a range starting at 1 or more")
        precondition(backoffMsMax <= ClientLimits.timeoutMsMax,
                     "backoffMsMax \(backoffMsMax) over \(ClientLimits.timeoutMsMax)")
    }

    /// The wait before retry number `retry` (0 for the first retry): the step
    /// `backoffMsInitial * 2^retry`, capped at `backoffMsMax`, jittered into its upper half.
    public func backoffMs(retry: Int) -> Int {
        // Doubling stops at backoffMsMax; the shift is capped so it cannot overflow.
        let step = min(backoffMsMax, backoffMsInitial << min(retry, 30))
        return Int.random(in: (step + 1) / 2...step)
    }
}

extension Operation {
    /// Whether repeating the operation after a lost reply is harmless, so that a transport
    /// failure in the middle of it can be retried.
    ///
    /// Storefront mutations are idempotent by order id: kamid answers a repeat with the
    /// first answer (the same codes), so a retry can never issue twice. Queries change
    /// nothing. Operator mutations are not retried: a repeated import would report every
    /// row as a duplicate, and the operator should see what happened instead.
    var isSafeToRepeat: Bool {
        switch self {
        case .hello, .ping, .reserve, .commit, .issue, .release, .order, .entitlements, .activate, .stock, .stats, .verify,
             .skuList, .auditVerify, .jobs, .wait, .supplierList, .supplierShow, .upstreamFailed, .supplierReconcile,
             .riskList, .riskTest, .auditReveals, .reviewList, .campaignList, .couponList, .distributorList, .distributorStatement, .reconcilePayments, .report, .caseList, .webhookList:
            true
        case .skuSet, .importCSV, .void, .refund, .export, .reload, .tokenNew, .supplierMap, .supplierUnmap, .supplierPause,
             .supplierResume, .supplierSync, .skuSource, .upstreamRetry, .risk, .riskBlock, .riskUnblock, .reviewApprove, .reviewDeny, .deliver, .campaignSet, .couponAdd, .distributorSet, .caseOpen, .caseResolve, .webhookReplay:
            false
        }
    }
}
