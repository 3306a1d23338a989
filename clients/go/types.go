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

// Entitlement is one code a user owns, with its order and state.
type Entitlement struct {
	Order         string
	ID            int64
	SKU           string
	State         CodeState
	Secret        Secret
	HasSecret     bool
	CardNumber    string
	ActivationURL string
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
