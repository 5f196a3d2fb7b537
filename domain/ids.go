package domain

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"math/bits"
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
// Within one millisecond the random part steps up from the last id's by a
// random amount below 2^63, so ids made by one process sort in the order
// they were made and one id tells nothing of its neighbours: counting up
// by one, an id handed out gave away the ids (a user's among them) made
// in the same millisecond.
func NewID(prefix string) string {
	var step [8]byte
	_, _ = rand.Read(step[:])
	idMu.Lock()
	ms := uint64(time.Now().UnixMilli())
	if ms > idLastMs || !stepUp(&idLast, binary.BigEndian.Uint64(step[:])>>1+1) {
		// A new millisecond, or one whose room ran out (after some 2^16
		// ids), which takes the next millisecond early to keep the order.
		idLastMs = max(ms, idLastMs+1)
		_, _ = rand.Read(idLast[:])
		idLast[0] &= 0x7f // leave room to step up without overflowing
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], idLastMs<<16)
	copy(b[6:], idLast[:])
	idMu.Unlock()
	return prefix + idEncoding.EncodeToString(b[:])
}

// stepUp adds step to the 80-bit number r holds and reports whether the
// sum stays below 2^79, the room NewID leaves; if not, r is unchanged.
func stepUp(r *[10]byte, step uint64) bool {
	hi, lo := binary.BigEndian.Uint16(r[:2]), binary.BigEndian.Uint64(r[2:])
	lo2, carry := bits.Add64(lo, step, 0)
	if hi += uint16(carry); hi >= 0x8000 {
		return false
	}
	binary.BigEndian.PutUint16(r[:2], hi)
	binary.BigEndian.PutUint64(r[2:], lo2)
	return true
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
