package wire

import (
	"net"
	"net/url"
	"strings"
)

// OriginAllowed says whether a browser page at origin (a request's Origin
// header) may call Parley: it is a loopback one (a local tool, a
// developer's dev server), or origins lists it, or lists "*". An empty
// origin is no browser's, and is not one: callers decide what it means.
func OriginAllowed(origins []string, origin string) bool {
	for _, o := range origins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	u, err := url.Parse(origin)
	if err != nil || u.Scheme != "http" && u.Scheme != "https" {
		return false
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback()
	}
	return strings.EqualFold(host, "localhost")
}
