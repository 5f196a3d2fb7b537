package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// healthcheckTimeout bounds the whole check: a Parley that does not answer
// /readyz within it is not ready.
const healthcheckTimeout = 5 * time.Second

// healthcheck asks the Parley serving on PARLEY_ADDR (or at the base URL
// given) whether it is ready, and fails unless its /readyz answers 200: the
// container image's HEALTHCHECK, since the distroless image has no curl.
// Every failure exits 1, a wrong argument too: Docker reserves 2.
func healthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// A misspelt PARLEY_ADDR would check the default address instead.
	warnUnknownVars(env{}.commandLogger(stderr), os.Environ()) // in text: the check reads no log settings
	var target string
	switch {
	case len(args) == 1 && isHelp(args[0]):
		fmt.Fprint(stdout, usage)
		return nil
	case len(args) == 1:
		target = strings.TrimSuffix(args[0], "/") + "/readyz"
	case len(args) > 1:
		return fmt.Errorf("healthcheck takes at most one argument (a base URL such as http://127.0.0.1:8080), got %d", len(args))
	default:
		var err error
		if target, err = readyzURL(getenv("PARLEY_ADDR", "127.0.0.1:8080")); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, healthcheckTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	// No proxy: an HTTP_PROXY in the container's environment would take
	// the check elsewhere for any address but loopback's.
	client := &http.Client{Transport: &http.Transport{Proxy: nil}}
	res, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 512))
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s: %s", target, res.Status, strings.TrimSpace(string(body)))
	}
	fmt.Fprintln(stdout, "ready")
	return nil
}

// readyzURL is the /readyz address of a server listening on addr: one
// listening on every interface (0.0.0.0, ::, or no host, as the image's
// PARLEY_ADDR) is asked on loopback.
func readyzURL(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("healthcheck: PARLEY_ADDR %q: %w; set it to the HOST:PORT parley serve listens on", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	u := url.URL{Scheme: "http", Host: net.JoinHostPort(host, port), Path: "/readyz"} // escapes an IPv6 zone's %
	return u.String(), nil
}
