package domain

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"slices"
	"strings"
	"sync"
	"time"
)

// Public id prefixes, one per resource.
const (
	PrefixProject      = "prj_"
	PrefixProvider     = "aip_"
	PrefixChat         = "cht_"
	PrefixDocument     = "doc_"
	PrefixConversation = "cnv_"
	PrefixMessage      = "msg_"
	PrefixUser         = "usr_"
	PrefixKey          = "key_"
)

// idEncoding is Crockford's base32 alphabet in lower case. It is in ASCII
// order, so ids sort by the time they were made: lists page by id.
var idEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// NewID returns prefix followed by 26 characters: a millisecond timestamp
// and 80 random bits, so ids are unguessable and sort by creation time.
// Within one millisecond the random part counts up from the first id's, so
// ids made by one process sort in the order they were made.
func NewID(prefix string) string {
	idMu.Lock()
	ms := uint64(time.Now().UnixMilli())
	if ms > idLastMs {
		idLastMs = ms
		_, _ = rand.Read(idLast[:])
		idLast[0] &= 0x7f // leave room to count up without overflowing
	} else {
		for i := len(idLast) - 1; i >= 0; i-- {
			idLast[i]++
			if idLast[i] != 0 {
				break
			}
		}
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], idLastMs<<16)
	copy(b[6:], idLast[:])
	idMu.Unlock()
	return prefix + idEncoding.EncodeToString(b[:])
}

var (
	idMu     sync.Mutex
	idLastMs uint64
	idLast   [10]byte
)

// idPrefixes are every resource's prefix.
var idPrefixes = []string{PrefixProject, PrefixProvider, PrefixChat, PrefixDocument,
	PrefixConversation, PrefixMessage, PrefixUser, PrefixKey}

// validAnyID reports whether s looks like an id made by NewID with any
// resource's prefix.
func validAnyID(s string) bool {
	return slices.ContainsFunc(idPrefixes, func(prefix string) bool { return validID(prefix, s) })
}

// validID reports whether s looks like an id made by NewID with prefix.
func validID(prefix, s string) bool {
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok || len(rest) != 26 {
		return false
	}
	_, err := idEncoding.DecodeString(rest)
	return err == nil
}
