package kami

import (
	"errors"
	"fmt"
)

// Code is a protocol error code (its binary status number). A Code is itself an error,
// so errors.Is(err, kami.SoldOut) works.
type Code uint8

// Error codes of the protocol (docs/protocol.md, "Error codes").
const (
	BadRequest        Code = 1
	Unauthorized      Code = 2
	NotFound          Code = 3
	SoldOut           Code = 4
	LimitReached      Code = 5
	Conflict          Code = 6
	Expired           Code = 7
	TooLarge          Code = 8
	Busy              Code = 9
	Unavailable       Code = 10
	InvalidState      Code = 11
	Integrity         Code = 12
	Denied            Code = 13
	ChallengeRequired Code = 14
)

var codeNames = map[Code]string{
	BadRequest: "BAD_REQUEST", Unauthorized: "UNAUTHORIZED", NotFound: "NOT_FOUND", SoldOut: "SOLD_OUT",
	LimitReached: "LIMIT_REACHED", Conflict: "CONFLICT", Expired: "EXPIRED", TooLarge: "TOO_LARGE",
	Busy: "BUSY", Unavailable: "UNAVAILABLE", InvalidState: "INVALID_STATE", Integrity: "INTEGRITY",
	Denied: "DENIED", ChallengeRequired: "CHALLENGE_REQUIRED",
}

// String is the protocol's name, or STATUS_N for a code this client does not know.
func (c Code) String() string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return fmt.Sprintf("STATUS_%d", uint8(c))
}

// Error makes a Code usable as an errors.Is target.
func (c Code) Error() string { return "kami: " + c.String() }

// Retryable reports whether the protocol says to retry later with the same order id.
func (c Code) Retryable() bool { return c == Busy || c == Unavailable }

// Error is an error answered by kamid. Message is the server's text (never a secret).
// Verdict is set for Denied and ChallengeRequired.
type Error struct {
	Code    Code
	Op      string
	Message string
	Verdict *Verdict
}

func (e *Error) Error() string {
	s := fmt.Sprintf("kami: %s: %s: %s", e.Op, e.Code.String(), e.Message)
	if e.Verdict != nil {
		s += fmt.Sprintf(" (risk %s, reason %s)", e.Verdict.Decision, e.Verdict.Reason)
	}
	return s
}

// Is matches a Code, or an *Error with the same Code.
func (e *Error) Is(target error) bool {
	switch t := target.(type) {
	case Code:
		return e.Code == t
	case *Error:
		return t != nil && e.Code == t.Code
	}
	return false
}

// NetError is a network failure talking to kamid (dial, write, read, a closed or broken
// connection). Calls retry these by themselves; one returned means the retries ran out.
type NetError struct {
	Op  string // the operation
	Err error
}

func (e *NetError) Error() string { return fmt.Sprintf("kami: %s: network: %v", e.Op, e.Err) }
func (e *NetError) Unwrap() error { return e.Err }

// Timeout reports whether the underlying error was a timeout.
func (e *NetError) Timeout() bool {
	var t interface{ Timeout() bool }
	return errors.As(e.Err, &t) && t.Timeout()
}

// ErrClosed is returned by calls on a closed Client.
var ErrClosed = errors.New("kami: client closed")

// ErrProtocol wraps a reply that could not be decoded (it also breaks the connection).
var ErrProtocol = errCodec

// IsNetwork reports whether err is a network failure.
func IsNetwork(err error) bool {
	var n *NetError
	return errors.As(err, &n)
}
