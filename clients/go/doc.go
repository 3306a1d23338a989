// Package kami is a storefront client for kamid, the Kami card-key (卡密) daemon.
//
// It speaks kamid's binary frames over TCP (docs/protocol.md): a bounded pool of
// connections, each saying hello with the client's token and pipelining requests by id.
// Every call takes a context.Context; idempotent calls (everything but Risk) are retried
// with backoff after a network error, BUSY or UNAVAILABLE, which is safe because kamid
// answers a repeated order id with the first answer.
//
//	c := kami.NewClient("127.0.0.1:7420", kami.Options{Token: token})
//	defer c.Close()
//	o, err := c.Issue(ctx, kami.IssueRequest{Order: "A1", User: "alice", SKU: "vip", Qty: 1, PaymentRef: "pay-1"})
//	switch {
//	case errors.Is(err, kami.SoldOut): ...
//	case err != nil: ...
//	}
//	for _, code := range o.Codes { deliver(code.ID, code.Secret.Reveal()) }
package kami
