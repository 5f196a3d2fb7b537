package domain

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ProviderType names the wire protocol of an AI provider.
type ProviderType string

const (
	ProviderOpenAI           ProviderType = "openai"
	ProviderOpenAICompatible ProviderType = "openai-compatible"
	ProviderAzureOpenAI      ProviderType = "azure-openai"
	ProviderAnthropic        ProviderType = "anthropic"
)

// AIProvider is an upstream LLM endpoint with its credentials. The API key
// is kept encrypted (APIKeyCiphertext, sealed as APIKeyKeyID says: see
// SealedUnder) or referenced from the server's environment (APIKeyRef); it
// is never returned.
type AIProvider struct {
	ID               string
	ProjectID        string
	Name             string
	Type             ProviderType
	BaseURL          string
	DefaultModel     string
	APIVersion       string // azure-openai only
	PromptCache      string // anthropic only: PromptCache5m or PromptCache1h; "" caches nothing
	APIKeyCiphertext []byte
	APIKeyKeyID      string
	APIKeyHint       string
	APIKeyRef        string
	CreatedAt        time.Time
	UpdatedAt        time.Time
}

// The values of AIProvider.PromptCache, and of the API's promptCache, where
// PromptCacheOff stands for "": how long Anthropic keeps the prompt each
// call asks it to cache. OpenAI caches long prompts by itself.
const (
	PromptCacheOff = "off"
	PromptCache5m  = "5m"
	PromptCache1h  = "1h"
)

// PromptCacheSetting is p's prompt caching as the API shows it: for an
// Anthropic provider PromptCacheOff or how long a cached prompt lives; for
// the others "", as it does not apply.
func (p *AIProvider) PromptCacheSetting() string {
	if p.Type != ProviderAnthropic {
		return ""
	}
	return cmp.Or(p.PromptCache, PromptCacheOff)
}

// HasAPIKey reports whether the provider has a stored or referenced key.
func (p *AIProvider) HasAPIKey() bool { return len(p.APIKeyCiphertext) > 0 || p.APIKeyRef != "" }

// ProviderFilter selects AI providers to list.
type ProviderFilter struct {
	ProjectID    string // "" for every project visible to MemberUserID
	MemberUserID string // "" for all (admin)
	Page         Page
}

// ProviderStore keeps AI providers.
type ProviderStore interface {
	// CreateProvider inserts p; Conflict when its id exists, NotFound when
	// its project does not.
	CreateProvider(ctx context.Context, p *AIProvider) error
	// GetProvider returns NotFound when id does not exist.
	GetProvider(ctx context.Context, id string) (*AIProvider, error)
	// ListProviders returns up to f.Page.Limit+1 providers ordered by id,
	// of f.ProjectID and of the projects f.MemberUserID is a member of
	// when set.
	ListProviders(ctx context.Context, f ProviderFilter) ([]AIProvider, error)
	// ListAllProviders returns every provider, for re-encrypting keys.
	ListAllProviders(ctx context.Context) ([]AIProvider, error)
	// UpdateProvider saves every field of p, provided the stored provider's
	// updatedAt is still prev (a zero prev: whatever it is); NotFound when
	// absent, StaleUpdate when another write came first.
	UpdateProvider(ctx context.Context, p *AIProvider, prev time.Time) error
	// DeleteProvider returns NotFound when absent and Conflict while chats use it.
	DeleteProvider(ctx context.Context, id string) error
}

// Sealer encrypts provider API keys under a master key, authenticating
// associated data with them. keyID names the master key used, so keys can
// be rotated.
type Sealer interface {
	// Seal encrypts plaintext under the current master key; Open must be
	// given the same associated data ad.
	Seal(plaintext, ad []byte) (ciphertext []byte, keyID string, err error)
	// Open decrypts a ciphertext sealed under keyID with ad. It fails when
	// the master key is not loaded (see Holds), and when the ciphertext or
	// ad differ from the sealing's.
	Open(ciphertext []byte, keyID string, ad []byte) ([]byte, error)
	// Holds reports whether the master key keyID is loaded.
	Holds(keyID string) bool
}

// boundKeyMark starts the APIKeyKeyID of a key sealed with its provider's
// id as associated data. That binds the ciphertext to its row: copied into
// another provider's row it does not open, so one who can write the
// database but does not hold the master key cannot make one project spend
// another's key. Keys sealed before binding carry the bare master key id
// (16 hex digits, never a ':') and are opened without associated data;
// `parley admin rotate-key` seals them again, bound. The mark lives in the
// key id rather than in the ciphertext (where it could be taken for a
// random nonce) or in a column of its own (which a writer that predates it,
// an older replica during an upgrade, would leave stale): every writer
// writes the ciphertext and its key id together. Stripping the mark gains
// an attacker nothing: a bound ciphertext opened without its associated
// data fails too.
const boundKeyMark = "v2:"

// SealedUnder returns the id of the master key p's API key is sealed under,
// and whether the ciphertext is bound to p (sealed with p.ID as associated
// data); "" when p has no sealed key.
func (p *AIProvider) SealedUnder() (masterKeyID string, bound bool) {
	return strings.CutPrefix(p.APIKeyKeyID, boundKeyMark)
}

// keyAD is the associated data p's API key is sealed with: its id, which
// never changes, or none for a key sealed before binding.
func (p *AIProvider) keyAD() []byte {
	if _, bound := p.SealedUnder(); !bound {
		return nil
	}
	return []byte(p.ID)
}

// sealKey seals key as p's API key under the current master key, bound to p.
func (p *AIProvider) sealKey(s Sealer, key []byte) error {
	ct, masterKeyID, err := s.Seal(key, []byte(p.ID))
	if err != nil {
		return err
	}
	p.APIKeyCiphertext, p.APIKeyKeyID = ct, boundKeyMark+masterKeyID
	return nil
}

// openKey decrypts p's sealed API key.
func (p *AIProvider) openKey(s Sealer) ([]byte, error) {
	masterKeyID, _ := p.SealedUnder()
	return s.Open(p.APIKeyCiphertext, masterKeyID, p.keyAD())
}

// Resolver looks up a host's addresses; *net.Resolver implements it.
type Resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

var defaultResolver Resolver = net.DefaultResolver

// envKeyPrefix is the only environment a provider's apiKeyRef may read:
// otherwise a tenant could point a provider at its own server and read
// env:PARLEY_DATABASE_URL in the Authorization header.
const envKeyPrefix = "PARLEY_PROVIDER_KEY_"

// envKeyName is an environment variable name apiKeyRef may read: the
// prefix, then letters, digits and underscores (a NUL or a newline names no
// variable, and PostgreSQL cannot store a NUL).
var envKeyName = regexp.MustCompile(`^` + envKeyPrefix + `[A-Za-z0-9_]+$`)

// Providers manages AI providers and resolves their credentials.
type Providers struct {
	deps   Deps
	access access
}

// ProviderCreate is the input of Providers.Create. APIKey and APIKeyRef are
// mutually exclusive.
type ProviderCreate struct {
	ProjectID    string
	Name         string
	Type         ProviderType
	BaseURL      string
	DefaultModel string
	APIVersion   string
	PromptCache  string // PromptCacheOff, PromptCache5m or PromptCache1h; "" is off
	APIKey       string
	APIKeyRef    string
}

// ProviderUpdate changes the fields that are not nil. Setting APIKey clears
// APIKeyRef and the other way round; "" removes the key.
type ProviderUpdate struct {
	Name         *string
	BaseURL      *string
	DefaultModel *string
	APIVersion   *string
	PromptCache  *string
	APIKey       *string
	APIKeyRef    *string
}

// Create adds an AI provider to a project (owner).
func (s *Providers) Create(ctx context.Context, in ProviderCreate) (*AIProvider, error) {
	if err := checkRef("projectId", PrefixProject, in.ProjectID); err != nil {
		return nil, err
	}
	if err := s.access.checkProject(ctx, in.ProjectID, PermCreateProvider); err != nil {
		return nil, err
	}
	now := s.deps.Now()
	p := &AIProvider{
		ID: NewID(PrefixProvider), ProjectID: in.ProjectID, Name: trimRequired(in.Name), Type: in.Type,
		BaseURL: strings.TrimRight(strings.TrimSpace(in.BaseURL), "/"), DefaultModel: trimRequired(in.DefaultModel),
		APIVersion: strings.TrimSpace(in.APIVersion), PromptCache: storedPromptCache(in.PromptCache), CreatedAt: now, UpdatedAt: now,
	}
	if in.APIKey != "" && in.APIKeyRef != "" {
		return nil, Invalidf("apiKey", "send apiKey or apiKeyRef, not both")
	}
	if err := s.setKey(p, in.APIKey, in.APIKeyRef); err != nil {
		return nil, err
	}
	if err := lendsServerKey(ctx, nil, p); err != nil {
		return nil, err
	}
	if err := s.refSet(nil, p); err != nil {
		return nil, err
	}
	if err := s.validate(ctx, p, nil); err != nil {
		return nil, err
	}
	if err := s.deps.Store.CreateProvider(ctx, p); err != nil {
		return nil, Wrap("providers.Create", err)
	}
	return p, nil
}

// refSet refuses a reference, new to p (before is nil on create), to a
// variable not set on this server: a 400 now rather than a 503 at the
// first completion. It runs after lendsServerKey, so only an admin, the
// operator, learns whether a variable is set.
func (s *Providers) refSet(before, p *AIProvider) error {
	if p.APIKeyRef == "" || (before != nil && before.APIKeyRef == p.APIKeyRef) {
		return nil
	}
	name := strings.TrimPrefix(p.APIKeyRef, "env:")
	if v, ok := s.deps.LookupEnv(name); !ok || strings.TrimSpace(v) == "" {
		return Invalidf("apiKeyRef", "apiKeyRef names %s, which is not set on this server; set it (on every instance) before a provider names it", name)
	}
	return nil
}

// lendsServerKey refuses, to anyone but an admin, a provider that would
// send one of the server's own keys (apiKeyRef) to a base URL an admin did
// not choose: a new provider with a reference, a reference set, or the
// base URL of a provider that has one changed. Any user may own a project,
// and an owner who could point a reference at a server of theirs would
// read the operator's key off the request. before is nil on create.
func lendsServerKey(ctx context.Context, before, p *AIProvider) error {
	if p.APIKeyRef == "" || (before != nil && before.APIKeyRef == p.APIKeyRef && before.BaseURL == p.BaseURL) {
		return nil
	}
	if caller, _ := PrincipalFrom(ctx); caller.IsAdmin {
		return nil
	}
	return Errorf(Forbidden, "apiKeyRef lends the server's own key (%s), so only an admin may set it, or change the baseUrl of a provider that has one; send apiKey with your own key, or ask an admin", p.APIKeyRef)
}

func (s *Providers) setKey(p *AIProvider, key, ref string) error {
	p.APIKeyCiphertext, p.APIKeyKeyID, p.APIKeyHint, p.APIKeyRef = nil, "", "", ""
	switch {
	case key != "":
		if err := checkText("apiKey", key, true, 4096); err != nil {
			return err
		}
		// Whitespace around a pasted key (a trailing newline) is no part of
		// it; one inside, a control character, cannot go in the header that
		// carries it, so every call would fail with no cause named. Nor
		// can an invisible one (a BOM or a zero-width space a paste
		// brought along), which the provider refuses as a wrong key.
		key = strings.TrimSpace(key)
		if i := strings.IndexFunc(key, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }); i >= 0 {
			return Invalidf("apiKey", "apiKey must not contain a control or invisible character such as a newline, a tab or a byte order mark (one is at character %d); send the key alone, as the provider shows it", utf8.RuneCountInString(key[:i])+1)
		}
		if err := p.sealKey(s.deps.Sealer, []byte(key)); err != nil {
			return Wrap("providers.setKey", err)
		}
		p.APIKeyHint = keyHint(key)
	case ref != "":
		name, ok := strings.CutPrefix(ref, "env:")
		if !ok || !envKeyName.MatchString(name) {
			return Invalidf("apiKeyRef", "apiKeyRef must be \"env:%sNAME\", NAME of letters, digits and underscores: only environment variables starting with %s may hold provider keys", envKeyPrefix, envKeyPrefix)
		}
		p.APIKeyRef = ref
	}
	return nil
}

// keyHint shows enough of a key to recognise it: "sk-…abcd". A key too
// short for seven characters to be a small part of it shows none.
func keyHint(key string) string {
	r := []rune(key) // whole characters: a cut one is not UTF-8, which PostgreSQL refuses
	if len(r) < minHintedKeyLen {
		return "…"
	}
	return string(r[:3]) + "…" + string(r[len(r)-4:])
}

// minHintedKeyLen is the shortest key keyHint shows characters of; real
// provider keys are 40 characters and more.
const minHintedKeyLen = 20

// AzureDeploymentName reports whether model may be sent to Azure OpenAI,
// whose model is a deployment name that goes into the URL's path as it is
// (go-openai does not escape it): one segment, of the characters Azure
// allows in one, and not "." or "..". A "/", "%2F" or ".." would take the
// call, with the provider's key, to another path of the resource than a
// chat completion's.
func AzureDeploymentName(model string) bool {
	return model != "." && model != ".." && azureToken(model)
}

// azureToken reports whether s is not empty and only of letters, digits,
// '.', '_' and '-': a deployment name's characters, and an API version's.
func azureToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// AzureV1 reports whether baseURL is Azure OpenAI's v1 API
// (https://<resource>.openai.azure.com/openai/v1): an OpenAI-wire API
// that takes the deployment name as the body's model, and no api-version.
// Any other base URL of an azure-openai provider is the resource's root,
// under which the dated API's deployment paths lie.
func AzureV1(baseURL string) bool {
	u, err := url.Parse(baseURL)
	return err == nil && strings.HasSuffix(strings.TrimRight(u.Path, "/"), "/openai/v1")
}

// validate checks p, created or, from before, updated (before is nil on
// create).
func (s *Providers) validate(ctx context.Context, p, before *AIProvider) error {
	var was *string
	if before != nil {
		was = &before.Name
	}
	if err := checkUpdatedName("name", p.Name, true, was); err != nil {
		return err
	}
	if err := checkModel("defaultModel", p.DefaultModel, true); err != nil {
		return err
	}
	switch p.Type {
	case ProviderOpenAI, ProviderAnthropic:
	case ProviderOpenAICompatible, ProviderAzureOpenAI:
		if p.BaseURL == "" {
			return Invalidf("baseUrl", "baseUrl is required for type %s", p.Type)
		}
		if p.Type == ProviderAzureOpenAI && !AzureDeploymentName(p.DefaultModel) {
			return Invalidf("defaultModel", "the defaultModel of an azure-openai provider is a deployment name, of letters, digits, '.', '_' and '-'")
		}
	default:
		return Invalidf("type", "type must be one of openai, openai-compatible, azure-openai, anthropic")
	}
	if p.Type != ProviderOpenAICompatible && !p.HasAPIKey() {
		// Only an OpenAI-compatible server (Ollama, vLLM) may take none.
		return Invalidf("apiKey", "type %s needs a key: send apiKey, or apiKeyRef naming a PARLEY_PROVIDER_KEY_ variable", p.Type)
	}
	if err := checkText("apiVersion", p.APIVersion, false, maxModelLen); err != nil {
		return err
	}
	if p.APIVersion != "" && (before == nil || p.APIVersion != before.APIVersion) && !azureToken(p.APIVersion) {
		// It goes into every call's query: one with a space or a "&" would
		// be saved and then refused by Azure at each completion. One stored
		// before this check stays, so that other fields can be updated.
		return Invalidf("apiVersion", "apiVersion is an Azure OpenAI API version such as 2024-10-21, of letters, digits, '.', '_' and '-'")
	}
	if p.APIVersion != "" && p.Type != ProviderAzureOpenAI {
		return Invalidf("apiVersion", "apiVersion applies only to type azure-openai; leave it out")
	}
	if p.APIVersion != "" && AzureV1(p.BaseURL) {
		return Invalidf("apiVersion", "Azure's v1 API (a baseUrl ending in /openai/v1) takes no apiVersion; leave it out, or set baseUrl to the resource's root (https://<resource>.openai.azure.com) to call a dated version")
	}
	switch p.PromptCache {
	case "":
	case PromptCache5m, PromptCache1h:
		if p.Type != ProviderAnthropic {
			return Invalidf("promptCache", "promptCache applies only to type anthropic (OpenAI caches long prompts by itself); leave it out or send \"off\"")
		}
	default:
		return Invalidf("promptCache", "promptCache must be one of off, 5m, 1h (how long Anthropic keeps a cached prompt)")
	}
	if p.BaseURL != "" {
		return s.checkBaseURL(ctx, p.BaseURL)
	}
	return nil
}

// maxBaseURL is the longest baseUrl a provider takes: it goes in every
// provider's answer and before every call's path.
const maxBaseURL = 2048

// checkBaseURL refuses URLs that are not http(s), hosts on link-local or
// metadata addresses and, unless the operator allowed them, hosts on
// loopback, private or shared ones (SSRF). The llm package checks again at
// connect time, against DNS rebinding.
func (s *Providers) checkBaseURL(ctx context.Context, raw string) error {
	if len(raw) > maxBaseURL {
		return Invalidf("baseUrl", "baseUrl is %d bytes; an API's base URL takes at most %d", len(raw), maxBaseURL)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Invalidf("baseUrl", "baseUrl must be an absolute http or https URL")
	}
	if u.User != nil {
		return Invalidf("baseUrl", "baseUrl must not carry credentials; use apiKey or apiKeyRef")
	}
	if strings.ContainsAny(raw, "?#") {
		// The clients append the API's path to baseUrl as text, so a query
		// or a fragment would swallow it: ".../v1?x=1/chat/completions".
		return Invalidf("baseUrl", "baseUrl must not carry a query string or a fragment (?… or #…): the API's path is appended to it; for Azure's api-version send apiVersion")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return Invalidf("baseUrl", "the port of baseUrl, %s, must be from 1 to 65535", p)
		}
	}
	host := u.Hostname()
	var addrs []net.IP
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []net.IP{a.WithZone("").AsSlice()} // fe80::1%eth0 too
	} else if !s.deps.AllowPrivateUpstreams {
		// Where private upstreams are allowed, a name is checked only when
		// dialled (llm's guard), which it is in any case.
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		res, err := s.deps.Resolver.LookupIPAddr(ctx, host)
		if err != nil {
			return Invalidf("baseUrl", "the host of baseUrl, %q, cannot be resolved", host)
		}
		for _, a := range res {
			addrs = append(addrs, a.IP)
		}
	}
	for _, ip := range addrs {
		switch {
		case IsMetadataIP(ip):
			// Even where private upstreams are allowed: the switch opens
			// the operator's network to every project owner, not the
			// cloud's credentials.
			return Invalidf("baseUrl", "baseUrl %q points at a link-local or cloud metadata address, which no AI provider may use", raw)
		case !s.deps.AllowPrivateUpstreams && IsPrivateIP(ip):
			return Invalidf("baseUrl", "baseUrl %q points at a loopback, private or shared address; the operator must set PARLEY_ALLOW_PRIVATE_UPSTREAMS=true to allow that", raw)
		}
	}
	return nil
}

// IsPrivateIP reports whether ip is one an upstream must not have unless
// private upstreams are allowed: any address that is not on the public
// internet (IANA's special-purpose registries), since each can reach a
// host inside the operator's network or a cloud's metadata service
// (169.254.169.254, fd00:ec2::254, Alibaba's 100.100.100.200 in the
// shared address space). IPv6 forms that carry an IPv4 address (mapped,
// NAT64, 6to4) are judged by that address; the deprecated forms that can
// only tunnel to one (IPv4-compatible, Teredo) are refused outright.
func IsPrivateIP(ip net.IP) bool {
	a, ok := carried(ip)
	return !ok || slices.ContainsFunc(nonPublic, func(p netip.Prefix) bool { return p.Contains(a) })
}

// IsMetadataIP reports whether ip is one no upstream may have, even where
// private upstreams are allowed: link-local addresses, where clouds'
// metadata services answer (169.254.169.254), and the metadata services'
// other addresses (AWS's fd00:ec2::254, Alibaba's 100.100.100.200). No
// model server lives there, and a credential does.
func IsMetadataIP(ip net.IP) bool {
	a, ok := carried(ip)
	return !ok || slices.ContainsFunc(metadata, func(p netip.Prefix) bool { return p.Contains(a) })
}

// carried is ip as netip's, an IPv6 form that carries an IPv4 address
// (mapped, NAT64, 6to4, SIIT) as that address; false when ip is none.
func carried(ip net.IP) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return a, false
	}
	a = a.Unmap()
	if a.Is6() {
		b := a.As16()
		switch {
		case nat64.Contains(a), ipv4Translated.Contains(a):
			a = netip.AddrFrom4([4]byte(b[12:16]))
		case sixToFour.Contains(a):
			a = netip.AddrFrom4([4]byte(b[2:6]))
		}
	}
	return a, true
}

var (
	nat64          = netip.MustParsePrefix("64:ff9b::/96")
	ipv4Translated = netip.MustParsePrefix("::ffff:0:0:0/96") // SIIT (RFC 6145), where a translator routes it
	sixToFour      = netip.MustParsePrefix("2002::/16")
	metadata       = []netip.Prefix{
		netip.MustParsePrefix("169.254.0.0/16"),     // link-local, cloud metadata
		netip.MustParsePrefix("fe80::/10"),          // link-local
		netip.MustParsePrefix("fd00:ec2::254/128"),  // AWS's metadata over IPv6
		netip.MustParsePrefix("100.100.100.200/32"), // Alibaba Cloud's metadata
	}
	nonPublic = []netip.Prefix{
		netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
		netip.MustParsePrefix("10.0.0.0/8"),      // private
		netip.MustParsePrefix("100.64.0.0/10"),   // shared address space (carrier NAT, some clouds' metadata)
		netip.MustParsePrefix("127.0.0.0/8"),     // loopback
		netip.MustParsePrefix("169.254.0.0/16"),  // link-local, cloud metadata
		netip.MustParsePrefix("172.16.0.0/12"),   // private
		netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
		netip.MustParsePrefix("192.0.2.0/24"),    // documentation
		netip.MustParsePrefix("192.168.0.0/16"),  // private
		netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
		netip.MustParsePrefix("198.51.100.0/24"), // documentation
		netip.MustParsePrefix("203.0.113.0/24"),  // documentation
		netip.MustParsePrefix("224.0.0.0/4"),     // multicast
		netip.MustParsePrefix("240.0.0.0/4"),     // reserved, broadcast
		netip.MustParsePrefix("::/96"),           // unspecified, loopback, IPv4-compatible
		netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
		netip.MustParsePrefix("100::/64"),        // discard-only
		netip.MustParsePrefix("2001::/32"),       // Teredo
		netip.MustParsePrefix("2001:2::/48"),     // benchmarking
		netip.MustParsePrefix("2001:10::/28"),    // ORCHID, deprecated
		netip.MustParsePrefix("2001:20::/28"),    // ORCHIDv2
		netip.MustParsePrefix("2001:db8::/32"),   // documentation
		netip.MustParsePrefix("3fff::/20"),       // documentation (RFC 9637)
		netip.MustParsePrefix("5f00::/16"),       // SRv6 segment identifiers
		netip.MustParsePrefix("fc00::/7"),        // unique local (fd00:ec2::254 is AWS's metadata)
		netip.MustParsePrefix("fe80::/10"),       // link-local
		netip.MustParsePrefix("fec0::/10"),       // site-local, deprecated
		netip.MustParsePrefix("ff00::/8"),        // multicast
	}
)

// Get returns a provider the caller can see (never its key).
func (s *Providers) Get(ctx context.Context, id string) (*AIProvider, error) {
	p, err := lookup(WithFreshReads(ctx), PrefixProvider, "AI provider", id, s.deps.Store.GetProvider)
	if err != nil {
		return nil, err
	}
	if err := s.access.check(ctx, p.ProjectID, PermGetProvider, "AI provider", id); err != nil {
		return nil, err
	}
	return p, nil
}

// ListInput selects a project's resources to list; ProjectID "" lists every
// project the caller can see.
type ListInput struct {
	ProjectID string
	Page      Page
}

// listScope checks that the caller may list in projectID (perm) when it is
// set, and returns the member restriction for the store: without a
// project, the caller's user id (only their projects' items), or "" for an
// admin; with one, "" (the project was checked).
func (a access) listScope(ctx context.Context, projectID string, perm Permission) (string, error) {
	p, err := principal(ctx)
	if err != nil {
		return "", err
	}
	if projectID != "" {
		return "", a.checkProject(ctx, projectID, perm)
	}
	return visibleTo(p), nil
}

// List returns providers of the projects the caller can see.
func (s *Providers) List(ctx context.Context, in ListInput) (List[AIProvider], error) {
	member, err := s.access.listScope(ctx, in.ProjectID, PermListProviders)
	if err != nil {
		return List[AIProvider]{}, err
	}
	page, err := in.Page.normalizeIn(PrefixProvider, in.ProjectID)
	if err != nil {
		return List[AIProvider]{}, err
	}
	items, err := s.deps.Store.ListProviders(ctx, ProviderFilter{ProjectID: in.ProjectID, MemberUserID: member, Page: page})
	if err != nil {
		return List[AIProvider]{}, Wrap("providers.List", err)
	}
	return paginate(items, page, cursorIn(in.ProjectID, func(p AIProvider) string { return p.ID })), nil
}

// Update changes the fields of a provider that in sets (owner). When
// another write came first (a concurrent request, or another instance
// while this one's cached copy was older) the provider is read again and
// in applied to it (untilFresh), so that a key another request just
// replaced is not written back.
func (s *Providers) Update(ctx context.Context, id string, in ProviderUpdate) (*AIProvider, error) {
	return untilFresh(func() (*AIProvider, error) { return s.update(ctx, id, in) })
}

func (s *Providers) update(ctx context.Context, id string, in ProviderUpdate) (*AIProvider, error) {
	p, err := lookup(ctx, PrefixProvider, "AI provider", id, s.deps.Store.GetProvider)
	if err != nil {
		return nil, err
	}
	if err := s.access.check(ctx, p.ProjectID, PermUpdateProvider, "AI provider", id); err != nil {
		return nil, err
	}
	before := *p
	if err := cmp.Or(emptyWhenSent("name", in.Name, "AI provider"), emptyWhenSent("defaultModel", in.DefaultModel, "AI provider")); err != nil {
		return nil, err
	}
	if in.Name != nil {
		p.Name = trimRequired(*in.Name)
	}
	if in.BaseURL != nil {
		p.BaseURL = strings.TrimRight(strings.TrimSpace(*in.BaseURL), "/")
	}
	if in.DefaultModel != nil {
		p.DefaultModel = trimRequired(*in.DefaultModel)
	}
	if in.APIVersion != nil {
		p.APIVersion = strings.TrimSpace(*in.APIVersion)
	}
	if in.PromptCache != nil {
		p.PromptCache = storedPromptCache(*in.PromptCache)
	}
	if in.APIKey != nil && in.APIKeyRef != nil && *in.APIKey != "" && *in.APIKeyRef != "" {
		return nil, Invalidf("apiKey", "send apiKey or apiKeyRef, not both")
	}
	if in.APIKey != nil || in.APIKeyRef != nil {
		// As on create: the one that is not empty is the credential, and
		// both empty (or the one sent) remove it. {"apiKey": "",
		// "apiKeyRef": "env:…"} switches to the reference.
		var key, ref string
		if in.APIKey != nil {
			key = *in.APIKey
		}
		if in.APIKeyRef != nil {
			ref = *in.APIKeyRef
		}
		if err := s.setKey(p, key, ref); err != nil {
			return nil, err
		}
	}
	if err := lendsServerKey(ctx, &before, p); err != nil {
		return nil, err
	}
	if err := s.refSet(&before, p); err != nil {
		return nil, err
	}
	if p.BaseURL != before.BaseURL && len(p.APIKeyCiphertext) > 0 && in.APIKey == nil && in.APIKeyRef == nil {
		// The key is write-only, even to owners: moved with it, the
		// provider would send it to wherever the caller points it.
		return nil, Invalidf("apiKey", "changing the baseUrl of a provider with a stored key sends that key to the new address; send apiKey again with baseUrl (or \"\" to remove it)")
	}
	if err := s.validate(ctx, p, &before); err != nil {
		return nil, err
	}
	if !unchanged(before, p) {
		p.UpdatedAt = s.deps.Now()
	}
	// Also when nothing changes: see Chats.update.
	if err := s.deps.Store.UpdateProvider(ctx, p, before.UpdatedAt); err != nil {
		return nil, Wrap("providers.Update", err)
	}
	return p, nil
}

// Delete removes a provider (owner); Conflict while chats use it.
func (s *Providers) Delete(ctx context.Context, id string) error {
	p, err := lookup(ctx, PrefixProvider, "AI provider", id, s.deps.Store.GetProvider)
	if err != nil {
		return err
	}
	if err := s.access.check(ctx, p.ProjectID, PermDeleteProvider, "AI provider", id); err != nil {
		return err
	}
	return Wrap("providers.Delete", s.deps.Store.DeleteProvider(ctx, id))
}

// storedPromptCache is AIProvider.PromptCache for the API's promptCache v:
// "" for off.
func storedPromptCache(v string) string {
	if v == PromptCacheOff {
		return ""
	}
	return v
}

// endpoint resolves where and with which key to call p.
func (s *Providers) endpoint(p *AIProvider) (Endpoint, error) {
	e := Endpoint{Type: p.Type, BaseURL: p.BaseURL, APIVersion: p.APIVersion, PromptCache: p.PromptCache}
	switch {
	case len(p.APIKeyCiphertext) > 0:
		key, err := p.openKey(s.deps.Sealer)
		if err != nil {
			return e, &Error{Kind: Unavailable, Op: "providers.endpoint", Message: s.undecryptable(p), Err: err}
		}
		e.APIKey = Secret(key)
	case p.APIKeyRef != "":
		name := strings.TrimPrefix(p.APIKeyRef, "env:")
		v, ok := s.deps.LookupEnv(name)
		// As a stored key is: the whitespace around it (a file's trailing
		// newline, as `export X=$(cat key)` keeps none but an env file
		// may) dropped, a control character inside refused, which no
		// header can carry.
		v = strings.TrimSpace(v)
		if !ok || v == "" {
			return e, Errorf(Unavailable, "AI provider %s reads its key from %s, which is not set on the server", p.ID, name)
		}
		if strings.ContainsFunc(v, unicode.IsControl) {
			return e, Errorf(Unavailable, "AI provider %s reads its key from %s, whose value on the server contains a control character such as a newline; the operator must set it to the key alone", p.ID, name)
		}
		e.APIKey = Secret(v)
	}
	return e, nil
}

// undecryptable says why p's sealed API key did not open, and how to fix it.
func (s *Providers) undecryptable(p *AIProvider) string {
	if masterKeyID, _ := p.SealedUnder(); s.deps.Sealer.Holds(masterKeyID) {
		return fmt.Sprintf("the API key of AI provider %s cannot be decrypted: it does not open under master key %s, which this server holds, so it was altered in the database or copied there from another provider's row; a project owner must send the provider's apiKey again", p.ID, masterKeyID)
	}
	return fmt.Sprintf("the API key of AI provider %s cannot be decrypted: it was sealed under a master key this server does not hold; the operator must set that key in PARLEY_SECRET_KEY or PARLEY_OLD_SECRET_KEYS, or a project owner can send the provider's apiKey again", p.ID)
}

// KeyRotation is what Providers.RotateKeys did.
type KeyRotation struct {
	// Resealed counts the keys sealed again under the current master key.
	Resealed int
	// Bound counts those of them that were not bound to their provider
	// (sealed before keys were), whichever master key sealed them.
	Bound int
	// Unopened lists the keys that did not open, which are left as they
	// were, in the order of their providers' ids.
	Unopened []UnopenedKey
}

// UnopenedKey names a provider key RotateKeys could not open (never the key).
type UnopenedKey struct {
	ProviderID  string
	MasterKeyID string
	// Held reports whether the master key is loaded; then the ciphertext
	// was altered, or copied from another provider's row.
	Held bool
}

// RotateKeys seals every stored provider key that is not already sealed
// under the sealer's current master key and bound to its provider, again
// in that form. A key that does not open is listed in Unopened, and the
// others are still rotated: one lost master key should not keep the rest
// under a key the operator means to retire. An error (the database's)
// stops it; what it did so far is returned with it. For `parley admin
// rotate-key`.
func (s *Providers) RotateKeys(ctx context.Context) (KeyRotation, error) {
	var r KeyRotation
	all, err := s.deps.Store.ListAllProviders(ctx)
	if err != nil {
		return r, Wrap("providers.RotateKeys", err)
	}
	for i := range all {
		p := &all[i]
		rotated := false
		_, err := untilFresh(func() (*AIProvider, error) {
			if rotated { // a write came first: rotate what it left
				fresh, err := s.deps.Store.GetProvider(ctx, p.ID)
				if err != nil {
					return nil, err
				}
				p = fresh
			}
			rotated = true
			return p, s.rotateKey(ctx, p, &r)
		})
		if KindOf(err) == NotFound {
			continue // deleted meanwhile
		}
		if err != nil {
			return r, Wrap("providers.RotateKeys", err)
		}
	}
	return r, nil
}

// rotateKey seals p's key under the primary key, bound to p, if it is not
// already, counting it in r, or listing it there when it does not open.
// updatedAt moves on, so that an update based on an earlier read (another
// instance's cached copy) is stale and does not write the key sealed under
// the old key, or unbound, back.
func (s *Providers) rotateKey(ctx context.Context, p *AIProvider, r *KeyRotation) error {
	if len(p.APIKeyCiphertext) == 0 {
		return nil
	}
	key, err := p.openKey(s.deps.Sealer)
	if err != nil {
		masterKeyID, _ := p.SealedUnder()
		r.Unopened = append(r.Unopened, UnopenedKey{ProviderID: p.ID, MasterKeyID: masterKeyID, Held: s.deps.Sealer.Holds(masterKeyID)})
		return nil
	}
	_, wasBound := p.SealedUnder()
	prevKeyID, prev := p.APIKeyKeyID, p.UpdatedAt
	if err := p.sealKey(s.deps.Sealer, key); err != nil {
		return err
	}
	if p.APIKeyKeyID == prevKeyID {
		return nil // already sealed so; the new ciphertext is dropped
	}
	p.UpdatedAt = s.deps.Now()
	if err := s.deps.Store.UpdateProvider(ctx, p, prev); err != nil {
		return err
	}
	r.Resealed++
	if !wasBound {
		r.Bound++
	}
	return nil
}
