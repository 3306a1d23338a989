// Command kami-example issues one order through kamid's binary protocol and prints its
// state and code ids.
//
//	go run ./cmd/kami-example -token-file ../../kami-data/default.token -sku vip -order A1 -user alice
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"kami.example/kami"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:7420", "kamid's storefront TCP address")
	client := flag.String("client", "default", "client name for hello")
	token := flag.String("token", "", "client token (default: read -token-file)")
	tokenFile := flag.String("token-file", "kami-data/default.token", "file holding the token, used when -token is empty")
	sku := flag.String("sku", "vip", "SKU to buy")
	order := flag.String("order", "", "order id (required; repeating it returns the same codes)")
	user := flag.String("user", "alice", "buyer's user id")
	qty := flag.Int("qty", 1, "units")
	payRef := flag.String("payment-ref", "", "payment reference (default pay-ORDER)")
	showSecrets := flag.Bool("show-secrets", false, "print the secrets too")
	timeout := flag.Duration("timeout", 10*time.Second, "deadline for the whole call, retries included")
	flag.Parse()

	if *order == "" {
		fmt.Fprintln(os.Stderr, "kami-example: -order is required")
		flag.Usage()
		os.Exit(2)
	}
	if *token == "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "kami-example: no -token and cannot read -token-file: %v\n", err)
			os.Exit(2)
		}
		*token = strings.TrimSpace(string(b))
	}
	if *payRef == "" {
		*payRef = "pay-" + *order
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	c := kami.NewClient(*addr, kami.Options{Client: *client, Token: *token})
	defer c.Close()

	o, err := c.Issue(ctx, kami.IssueRequest{Order: *order, User: *user, SKU: *sku, Qty: *qty, PaymentRef: *payRef})
	if err != nil {
		var ke *kami.Error
		switch {
		case errors.Is(err, kami.SoldOut):
			fmt.Fprintln(os.Stderr, "sold out:", err)
		case errors.Is(err, kami.LimitReached):
			fmt.Fprintln(os.Stderr, "per-user limit reached:", err)
		case errors.As(err, &ke):
			fmt.Fprintf(os.Stderr, "kamid refused (%s): %v\n", ke.Code.String(), err)
		case errors.Is(err, context.DeadlineExceeded):
			fmt.Fprintln(os.Stderr, "timed out:", err)
		default:
			fmt.Fprintln(os.Stderr, "failed:", err)
		}
		os.Exit(1)
	}
	fmt.Printf("order %s: state %s, sku %s, qty %d, %d code(s)\n", o.ID, o.State, o.SKU, o.Qty, len(o.Codes))
	for _, code := range o.Codes {
		if *showSecrets {
			fmt.Printf("  code %d secret %s\n", code.ID, code.Secret.Reveal())
		} else {
			fmt.Printf("  code %d secret %s\n", code.ID, code.Secret) // prints [redacted]
		}
	}
}
