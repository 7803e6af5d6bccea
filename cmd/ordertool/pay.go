package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/txorder/txorder/configs"
	"github.com/txorder/txorder/payment"
)

// envAPIKey names the variable holding the API key ordertool reads orders
// with, as in the Makefile and scripts/devstack.sh. It must not start with
// configs.EnvPrefix: every TXORDER_ variable is a configuration key.
const envAPIKey = "TXO_API_KEY"

// maxResponseBytes bounds what ordertool reads of an answer.
const maxResponseBytes = 1 << 20

func runPay(ctx context.Context, env *environment, args []string) error {
	fs := newFlagSet(env, "pay <order-id> [flags]",
		"Plays the payment provider: signs a payment notification for the order with the\n"+
			"configured webhook secret (TXORDER_PAYMENT__WEBHOOK_SECRET or payment.webhook_secret_file)\n"+
			"and posts it to POST /v1/payments/notify. Without --amount or --currency they are read\n"+
			"from GET /v1/orders/<id>. Prints orderd's answer; exits 0 when it is 200, 1 otherwise.")
	configPath := fs.String("config", env.configPath("orderd"), "orderd configuration file (empty: defaults and environment only; default .run/orderd.yaml after make run)")
	amount := fs.Int64("amount", 0, "amount in minor units (default: the order's total)")
	cur := fs.String("currency", "", "ISO-4217 currency (default: the order's)")
	txnID := fs.String("txn-id", "", "provider transaction id (default: a new UUID); send one again to replay it")
	baseURL := fs.String("url", "", "orderd base URL (default: from http.addr of the configuration)")
	apiKey := fs.String("api-key", "", "API key to read the order with (default: $"+envAPIKey+", else the first key of auth.admin_keys, which reads every order, else the first of auth.api_keys, which reads its own, else the development key)")
	timeout := fs.Duration("timeout", 10*time.Second, "bound of each HTTP request")
	args, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(args) != 1 {
		fmt.Fprintln(env.stderr, "ordertool pay: want exactly one order id")
		fs.Usage()
		return errUsage
	}
	orderID, err := uuid.Parse(args[0])
	if err != nil {
		fmt.Fprintf(env.stderr, "ordertool pay: order id %q is not a UUID\n", args[0])
		return errUsage
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	cfg, err := configs.LoadOrderd(*configPath, env.environ)
	if err != nil {
		return err
	}
	secret := cfg.Payment.WebhookSecret
	if secret == "" {
		return fmt.Errorf("no webhook secret: set %s (or payment.webhook_secret_file) to the secret orderd uses",
			configs.EnvName("payment.webhook_secret"))
	}
	client := &http.Client{Timeout: *timeout}
	base := strings.TrimRight(cmp.Or(*baseURL, orderdURL(cfg.HTTP.Addr)), "/")

	n := payment.Notification{ProviderTxnID: *txnID, OrderID: orderID, Amount: *amount, Currency: *cur}
	if n.ProviderTxnID == "" {
		n.ProviderTxnID = uuid.NewString()
	}
	if !set["amount"] || !set["currency"] {
		key := *apiKey
		if key == "" {
			key = defaultAPIKey(env.environ, cfg.Auth.AdminKeys, cfg.Auth.APIKeys)
		}
		total, currency, err := fetchOrder(ctx, client, base, key, orderID)
		if err != nil {
			return err
		}
		if !set["amount"] {
			n.Amount = total
		}
		if !set["currency"] {
			n.Currency = currency
		}
	}

	body, err := json.Marshal(n)
	if err != nil {
		return err
	}
	status, answer, err := send(ctx, client, http.MethodPost, base+"/v1/payments/notify", body, map[string]string{
		"Content-Type":          "application/json",
		payment.HeaderSignature: payment.Sign(secret, time.Now(), body),
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stderr, "ordertool pay: order %s, %d %s, provider transaction %s → %d\n",
		orderID, n.Amount, n.Currency, n.ProviderTxnID, status)
	fmt.Fprintln(env.stdout, strings.TrimSpace(string(answer)))
	if status != http.StatusOK {
		return fmt.Errorf("payment not applied: %s", describeProblem(status, answer))
	}
	return nil
}

// parseInterleaved parses flags before and after the positional
// arguments (the flag package stops at the first one), so that both
// "pay <id> --amount 1" and "pay --amount 1 <id>" work.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := parse(fs, args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// defaultAPIKey is $TXO_API_KEY, else the key of the first name:key pair
// of the first non-empty list (admin keys read every order, a client's
// key only that client's), else the development key.
func defaultAPIKey(environ []string, keyLists ...string) string {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == envAPIKey && v != "" {
			return v
		}
	}
	for _, list := range keyLists {
		first, _, _ := strings.Cut(list, ",")
		if _, key, ok := strings.Cut(strings.TrimSpace(first), ":"); ok && key != "" {
			return key
		}
	}
	return configs.DevAPIKey
}

// fetchOrder reads the total and currency of an order from the API.
func fetchOrder(ctx context.Context, client *http.Client, base, apiKey string, id uuid.UUID) (int64, string, error) {
	status, answer, err := send(ctx, client, http.MethodGet, base+"/v1/orders/"+id.String(), nil,
		map[string]string{"Authorization": "Bearer " + apiKey})
	if err != nil {
		return 0, "", err
	}
	if status != http.StatusOK {
		return 0, "", fmt.Errorf("read order %s for its total (or pass --amount and --currency): %s", id, describeProblem(status, answer))
	}
	var o struct {
		Total    int64  `json:"total"`
		Currency string `json:"currency"`
	}
	if err := json.Unmarshal(answer, &o); err != nil {
		return 0, "", fmt.Errorf("read order %s: %w", id, err)
	}
	return o.Total, o.Currency, nil
}

func send(ctx context.Context, client *http.Client, method, url string, body []byte, headers map[string]string) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return 0, nil, err
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	res, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(res.Body, maxResponseBytes))
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: read answer: %w", method, url, err)
	}
	return res.StatusCode, answer, nil
}

// describeProblem names the status and, for a problem body, its code and
// detail.
func describeProblem(status int, body []byte) string {
	var p struct {
		Code   string `json:"code"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal(body, &p); err != nil || p.Code == "" {
		return fmt.Sprintf("HTTP %d", status)
	}
	if p.Detail == "" {
		return fmt.Sprintf("HTTP %d %s", status, p.Code)
	}
	return fmt.Sprintf("HTTP %d %s: %s", status, p.Code, p.Detail)
}
