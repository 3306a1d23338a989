package kami

import (
	"context"
	"fmt"
	"time"
)

// IssueRequest places and pays an order in one step. Empty IP and Device are absent.
type IssueRequest struct {
	Order, User, SKU string
	Qty              int
	PaymentRef       string
	IP, Device       string
	// Wait > 0 holds the reply while the order is pending_upstream or in review, up to
	// Wait (kamid caps it at 60s). Such a call uses a connection of its own.
	Wait    time.Duration
	Signals *Signals
	Money   *Money
}

// ReserveRequest holds codes for an order until Commit or Release. TTL 0 is the
// server's default hold.
type ReserveRequest struct {
	Order, User, SKU string
	Qty              int
	TTL              time.Duration
	IP, Device       string
	Signals          *Signals
	Money            *Money
}

// CommitRequest pays a reserved order. User, when set, must own the order.
type CommitRequest struct {
	Order, PaymentRef string
	Wait              time.Duration
	User              string
}

// EntitlementsRequest asks for one page of a user's codes. Limit 0 is the server's
// default (100); Cursor "" is the first page.
type EntitlementsRequest struct {
	User   string
	Limit  int
	Cursor string
	IP     string
}

// RiskRequest asks the risk gate about a storefront event (login, register, pay...).
type RiskRequest struct {
	Event                 string
	User, IP, Device, SKU string
	Qty                   int
	Signals               *Signals
}

func opt(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func msOf(d time.Duration) int64 { return int64(d / time.Millisecond) }

func (c *Client) orderCall(ctx context.Context, op uint8, exclusive bool, extra time.Duration, build func(w *writer)) (*Order, error) {
	rep, err := c.call(ctx, op, true, exclusive, extra, build)
	if err != nil {
		return nil, err
	}
	o, err := decodeOrder(rep.payload)
	if err != nil {
		return nil, fmt.Errorf("kami: %s reply: %w", opName(op), err)
	}
	return o, nil
}

// Ping checks that kamid answers.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.call(ctx, opPing, true, false, 0, func(w *writer) {})
	return err
}

// Issue places and pays an order, returning it with its codes (state committed), or
// pending_upstream / review without codes. Repeating the same order id with the same
// arguments returns the same codes; it is retried by itself after a network error.
func (c *Client) Issue(ctx context.Context, r IssueRequest) (*Order, error) {
	qty, err := checkQty(r.Qty)
	if err != nil {
		return nil, &Error{Code: BadRequest, Op: "issue", Message: "client: " + err.Error()}
	}
	return c.orderCall(ctx, opIssue, r.Wait > 0, r.Wait, func(w *writer) {
		w.str("order", r.Order)
		w.str("user", r.User)
		w.str("sku", r.SKU)
		w.u32(qty)
		w.str("payment_ref", r.PaymentRef)
		w.optStr("ip", opt(r.IP))
		w.optStr("device", opt(r.Device))
		withSignals := !r.Signals.empty() || !r.Money.empty()
		if r.Wait > 0 || withSignals {
			w.u32(waitMsU32(msOf(r.Wait)))
		}
		if withSignals {
			w.signals(r.Signals)
			if !r.Money.empty() {
				w.money(r.Money)
			}
		}
	})
}

// Reserve holds codes for an order (state reserved, no secrets).
func (c *Client) Reserve(ctx context.Context, r ReserveRequest) (*Order, error) {
	qty, err := checkQty(r.Qty)
	if err != nil {
		return nil, &Error{Code: BadRequest, Op: "reserve", Message: "client: " + err.Error()}
	}
	return c.orderCall(ctx, opReserve, false, 0, func(w *writer) {
		w.str("order", r.Order)
		w.str("user", r.User)
		w.str("sku", r.SKU)
		w.u32(qty)
		w.i64(msOf(r.TTL))
		w.optStr("ip", opt(r.IP))
		w.optStr("device", opt(r.Device))
		if !r.Signals.empty() || !r.Money.empty() {
			w.signals(r.Signals)
			if !r.Money.empty() {
				w.money(r.Money)
			}
		}
	})
}

// Commit pays a reserved order and returns its codes.
func (c *Client) Commit(ctx context.Context, r CommitRequest) (*Order, error) {
	return c.orderCall(ctx, opCommit, r.Wait > 0, r.Wait, func(w *writer) {
		w.str("order", r.Order)
		w.str("payment_ref", r.PaymentRef)
		if r.Wait > 0 || r.User != "" {
			w.u32(waitMsU32(msOf(r.Wait)))
		}
		if r.User != "" {
			w.optStr("user", &r.User)
		}
	})
}

// Release gives a reserved order's codes back (state released).
func (c *Client) Release(ctx context.Context, order string) (*Order, error) {
	return c.orderCall(ctx, opRelease, false, 0, func(w *writer) { w.str("order", order) })
}

// Order looks an order up for its buyer (user is required over TCP; another user's
// order is NotFound). ip, the buyer's, may be "".
func (c *Client) Order(ctx context.Context, order, user, ip string) (*Order, error) {
	return c.orderCall(ctx, opOrder, false, 0, func(w *writer) {
		w.str("order", order)
		w.optStr("user", &user)
		w.optStr("ip", opt(ip))
	})
}

// Wait long-polls an order until it leaves pending_upstream or review, or d has passed
// (at most 60s), and returns it as it is. It uses a connection of its own. A context
// that ends first returns ctx.Err() at once.
func (c *Client) Wait(ctx context.Context, order, user string, d time.Duration) (*Order, error) {
	ms := msOf(d)
	if ms < 0 || ms > 60000 {
		return nil, &Error{Code: BadRequest, Op: "wait", Message: "client: wait must be 0 to 60s"}
	}
	return c.orderCall(ctx, opWait, true, d, func(w *writer) {
		w.str("order", order)
		w.u32(uint32(ms))
		w.optStr("user", &user)
		w.optStr("ip", nil)
	})
}

// Entitlements returns one page of what a user owns, newest order first.
func (c *Client) Entitlements(ctx context.Context, r EntitlementsRequest) (*Entitlements, error) {
	if r.Limit < 0 || r.Limit > 500 {
		return nil, &Error{Code: BadRequest, Op: "entitlements", Message: "client: limit must be 0 to 500"}
	}
	rep, err := c.call(ctx, opEntitlements, true, false, 0, func(w *writer) {
		w.str("user", r.User)
		if r.Limit != 0 || r.Cursor != "" || r.IP != "" {
			w.u32(uint32(r.Limit))
			w.optStr("cursor", opt(r.Cursor))
			if r.IP != "" {
				w.optStr("ip", &r.IP)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	e, err := decodeEntitlements(rep.payload)
	if err != nil {
		return nil, fmt.Errorf("kami: entitlements reply: %w", err)
	}
	return e, nil
}

// Activate marks codes of the buyer's committed order used: every code when codeID is 0,
// else just that one. user must own the order: another user's order, an unknown one and a
// code id that is not the order's are NotFound, and count as failed lookups for the user
// and ip (rate-limited like Order; ip, the buyer's, may be ""). Activating again is not an
// error: the same answer, with the first activation's time. A refunded order (or one not
// delivered yet) is InvalidState. It is retried by itself after a network error.
//
// The answer has one line per code: State CodeUsed, Status StatusUsed, UsedAtMs set, and
// never a secret.
func (c *Client) Activate(ctx context.Context, order, user string, codeID int64, ip string) ([]Entitlement, error) {
	if codeID < 0 {
		return nil, &Error{Code: BadRequest, Op: "activate", Message: "client: code id must be positive, or 0 for every code"}
	}
	return c.activate(ctx, func(w *writer) { w.activate(&order, &user, codeID, nil, opt(ip)) })
}

// ActivateToken marks used the one code an activation token names: the {token} of a
// SKU's activation link template, which the brand's page hands back. A forged or unknown
// token is NotFound; a genuine one past its time (15 minutes) is Expired (the buyer opens
// the link again from the order, which carries a fresh token). Repeating it is not an
// error. ip, the buyer's, may be "".
func (c *Client) ActivateToken(ctx context.Context, token, ip string) ([]Entitlement, error) {
	return c.activate(ctx, func(w *writer) { w.activate(nil, nil, 0, &token, opt(ip)) })
}

func (c *Client) activate(ctx context.Context, build func(w *writer)) ([]Entitlement, error) {
	rep, err := c.call(ctx, opActivate, true, false, 0, build)
	if err != nil {
		return nil, err
	}
	e, err := decodeEntitlements(rep.payload)
	if err != nil {
		return nil, fmt.Errorf("kami: activate reply: %w", err)
	}
	return e.Codes, nil
}

// Stock returns a SKU's counters.
func (c *Client) Stock(ctx context.Context, sku string) (*Stock, error) {
	rep, err := c.call(ctx, opStock, true, false, 0, func(w *writer) { w.str("sku", sku) })
	if err != nil {
		return nil, err
	}
	s, err := decodeStock(rep.payload)
	if err != nil {
		return nil, fmt.Errorf("kami: stock reply: %w", err)
	}
	return s, nil
}

// Risk asks the risk gate about an event. It changes the gate's counters, so it is not
// retried after a network error.
func (c *Client) Risk(ctx context.Context, r RiskRequest) (*Verdict, error) {
	qty, err := checkQty(r.Qty)
	if err != nil {
		return nil, &Error{Code: BadRequest, Op: "risk", Message: "client: " + err.Error()}
	}
	rep, err := c.call(ctx, opRisk, false, false, 0, func(w *writer) {
		w.str("event", r.Event)
		w.optStr("user", opt(r.User))
		w.optStr("ip", opt(r.IP))
		w.optStr("device", opt(r.Device))
		w.optStr("sku", opt(r.SKU))
		w.u32(qty)
		w.signals(r.Signals)
	})
	if err != nil {
		return nil, err
	}
	rd := &reader{b: rep.payload}
	v := decodeVerdict(rd)
	if rd.err != nil {
		return nil, fmt.Errorf("kami: risk reply: %w", rd.err)
	}
	return &v, nil
}
