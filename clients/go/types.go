package kami

import "fmt"

// Secret is a card key's secret. It prints as "[redacted]" with fmt (%v, %s, %q, %#v) so
// it cannot leak into logs by accident; call Reveal to get the text.
type Secret string

// Reveal returns the secret's text.
func (s Secret) Reveal() string { return string(s) }

// String returns "[redacted]".
func (s Secret) String() string { return "[redacted]" }

// GoString returns "[redacted]".
func (s Secret) GoString() string { return "[redacted]" }

// MarshalText redacts the secret in encoding/json and similar encoders.
func (s Secret) MarshalText() ([]byte, error) { return []byte("[redacted]"), nil }

// OrderState is the state of an order (binary numbers of the protocol).
type OrderState uint8

// Order states. Numbers the client does not know print as "#N": treat such an order as
// in progress and ask again later.
const (
	StateReserved        OrderState = 0
	StateCommitted       OrderState = 1
	StateReleased        OrderState = 2
	StateExpired         OrderState = 3
	StateRefunded        OrderState = 4
	StatePendingUpstream OrderState = 5
	StateFailed          OrderState = 6
	StateReview          OrderState = 7
)

var orderStateNames = [...]string{"reserved", "committed", "released", "expired", "refunded", "pending_upstream", "failed", "review"}

func (s OrderState) String() string {
	if int(s) < len(orderStateNames) {
		return orderStateNames[s]
	}
	return fmt.Sprintf("#%d", uint8(s))
}

// CodeState is the state of one code in an entitlements page.
type CodeState uint8

// Code states.
const (
	CodeAvailable CodeState = 0
	CodeReserved  CodeState = 1
	CodeIssued    CodeState = 2
	CodeVoided    CodeState = 3
	CodeUsed      CodeState = 4 // activated (Activate, or the brand's page through the link)
)

func (s CodeState) String() string {
	switch s {
	case CodeAvailable:
		return "available"
	case CodeReserved:
		return "reserved"
	case CodeIssued:
		return "issued"
	case CodeVoided:
		return "voided"
	case CodeUsed:
		return "used"
	}
	return fmt.Sprintf("#%d", uint8(s))
}

// CardCode is one code of an order. HasSecret is false where the owner may not see the
// secret yet (a reserved order).
type CardCode struct {
	ID            int64
	SKU           string
	Secret        Secret
	HasSecret     bool
	CardNumber    string // "" when absent
	ActivationURL string // "" when absent
}

// Order is an order as kamid answers it.
type Order struct {
	ID          string
	State       OrderState
	SKU         string
	Qty         int
	ExpiresAtMs int64 // hold or review deadline (Unix ms); meaningless in other states
	Codes       []CardCode
}

// Stock holds a SKU's counters.
type Stock struct {
	SKU                                           string
	Available, Reserved, Issued, Voided, Imported int64
}

// EntitlementStatus is what a 我的权益 page shows for an entitlement line. A word this
// client does not know may come from a newer kamid: show it as is.
type EntitlementStatus string

// Entitlement statuses.
const (
	// StatusPending: a paid order still waiting for a supplier or an operator; one line
	// for the whole order, with ID 0 and State CodeReserved.
	StatusPending   EntitlementStatus = "pending"
	StatusDelivered EntitlementStatus = "delivered" // delivered, not activated yet
	StatusUsed      EntitlementStatus = "used"      // activated
	StatusExpired   EntitlementStatus = "expired"   // past the code's own expiry
	StatusRefunded  EntitlementStatus = "refunded"  // the order was refunded
	StatusVoided    EntitlementStatus = "voided"    // withdrawn by the operator
)

// Entitlement is one code a user owns, with its order and state, and the buyer's view of
// it (Status through UsedAtMs; empty or 0 from a kamid older than activation). Activate
// answers the same shape, without a secret or a link: State CodeUsed, Status StatusUsed,
// UsedAtMs set, the other buyer's-view fields may be empty.
type Entitlement struct {
	Order         string
	ID            int64 // 0 on a StatusPending line
	SKU           string
	State         CodeState
	Secret        Secret
	HasSecret     bool
	CardNumber    string
	ActivationURL string

	Status      EntitlementStatus
	SKUName     string // the SKU's display name
	UsageGuide  string // how to redeem it (the SKU's usage guide; may hold line breaks); "" when none
	ExpiresAtMs int64  // the code's own expiry (Unix ms); 0 when none
	OrderedAtMs int64  // when the order was placed (Unix ms); pages are newest first
	UsedAtMs    int64  // when it was activated (Unix ms); 0 while it was not
}

// Entitlements is one page; NextCursor is "" on the last page.
type Entitlements struct {
	Codes      []Entitlement
	NextCursor string
}

// ServerInfo is what hello answered.
type ServerInfo struct {
	Protocol int
	Server   string
	Features []string
}

// HasFeature reports whether the server announced feature f.
func (s *ServerInfo) HasFeature(f string) bool {
	for _, x := range s.Features {
		if x == f {
			return true
		}
	}
	return false
}

// Decision is the risk gate's verdict.
type Decision uint8

// Decisions; an unknown number reads as DecisionDeny.
const (
	DecisionAllow     Decision = 0
	DecisionChallenge Decision = 1
	DecisionReview    Decision = 2
	DecisionDeny      Decision = 3
)

func (d Decision) String() string {
	return [...]string{"allow", "challenge", "review", "deny"}[d&3]
}

// Verdict is the risk gate's answer (in Risk replies and DENIED / CHALLENGE_REQUIRED errors).
type Verdict struct {
	Decision  Decision
	Reason    string
	Rules     []string
	Score     int64
	Challenge string // token to send back as Signals.ChallengeToken; "" when none
}
