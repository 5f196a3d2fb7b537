package domain

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// unixEpoch is the earliest time a usage period covers.
var unixEpoch = time.Unix(0, 0).UTC()

// UsageReports answers usage queries.
type UsageReports struct {
	store     Store
	access    access
	now       func() time.Time
	retention time.Duration // of usage records; 0 for none
}

// UsageInput is the input of UsageReports.Get. Zero From means 30 days
// before To; zero To means now. Page selects a page of the groups; a page
// after the first sums the first one's period, which From and To, when
// set, must be.
type UsageInput struct {
	ProjectID string
	From, To  time.Time
	GroupBy   UsageGroupBy
	Page      Page
}

// UsageReport is a page of a project's usage totals and the period they
// cover.
type UsageReport struct {
	From, To time.Time // From inclusive, To exclusive, the defaults resolved
	// RetainedFrom, when the period starts earlier, is the time before
	// which the records are past their retention: the totals may lack any
	// of them, and lack all once the sweep has run. Zero otherwise.
	RetainedFrom time.Time
	Totals       []UsageTotal
	NextCursor   string // "" on the last page, and when not grouped
}

// Get returns a page of a project's usage totals over the period in asks
// for, grouped as it asks, ordered by key byte by byte. Not grouped, the
// report is one total, on one page.
func (s *UsageReports) Get(ctx context.Context, in UsageInput) (UsageReport, error) {
	if err := s.access.checkProject(ctx, in.ProjectID, PermGetUsage); err != nil {
		return UsageReport{}, err
	}
	if in.GroupBy != "" && !slices.Contains(UsageGroupings, in.GroupBy) {
		return UsageReport{}, ErrUnknownGrouping()
	}
	if in.Page.Desc {
		return UsageReport{}, Invalidf("order", "usage groups come in the order of their key only; leave order out")
	}
	page := in.Page.limited()
	var after *string
	if in.Page.After != "" {
		c, ok := parseUsageCursor(in.Page.After)
		if !ok {
			return UsageReport{}, foreignCursor()
		}
		if err := c.check(in); err != nil {
			return UsageReport{}, err
		}
		in.From, in.To, after = c.from, c.to, &c.key
	}
	if in.To.IsZero() {
		in.To = s.now().Add(time.Second)
	}
	if in.From.IsZero() {
		in.From = in.To.Add(-30 * 24 * time.Hour)
	}
	// The report gives its period back in the API's milliseconds: sum
	// exactly that period, so that the next one asked for from this one's
	// end counts no record twice (nor misses one, from its start).
	in.From, in.To = periodStart(in.From), in.To.Truncate(time.Millisecond)
	if !in.To.After(unixEpoch) && !in.From.After(unixEpoch) {
		var totals []UsageTotal
		if in.GroupBy == "" {
			// Ungrouped, the report is one total, zero when nothing was
			// recorded, as for any other empty period.
			totals = []UsageTotal{{}}
		}
		return UsageReport{From: unixEpoch, To: unixEpoch, Totals: totals}, nil
	}
	if !in.From.Before(in.To) {
		return UsageReport{}, Invalidf("from", "from must be before to, to the millisecond (%s is not before %s)",
			in.From.Format(time.RFC3339Nano), in.To.Format(time.RFC3339Nano))
	}
	q := UsageQuery{ProjectID: in.ProjectID, From: in.From, To: in.To, GroupBy: in.GroupBy}
	if in.GroupBy != "" {
		q.After, q.Limit = after, page.Limit+1
	}
	// Providers' and chats' groups carry their names, for a caller who may
	// read them: a viewer's role may, a narrower custom policy may not.
	switch in.GroupBy {
	case GroupByProvider:
		q.Names = s.access.checkProject(ctx, in.ProjectID, PermGetProvider) == nil
	case GroupByChat:
		q.Names = s.access.checkProject(ctx, in.ProjectID, PermGetChat) == nil
	}
	totals, err := s.store.SumUsage(ctx, q)
	if err != nil {
		return UsageReport{}, Wrap("usage.Get", err)
	}
	rep := UsageReport{From: in.From, To: in.To, Totals: totals}
	if s.retention > 0 {
		if cut := periodStart(s.now().Add(-s.retention)); in.From.Before(cut) {
			rep.RetainedFrom = cut
		}
	}
	if in.GroupBy != "" {
		l := paginate(totals, page, func(t UsageTotal) string {
			return usageCursor{projectID: in.ProjectID, groupBy: in.GroupBy, from: in.From, to: in.To, key: t.Key}.String()
		})
		rep.Totals, rep.NextCursor = l.Items, l.NextCursor
	}
	return rep, nil
}

// periodStart is the start of a usage period from t: cut to the
// millisecond, as the API gives times back, and not before the Unix
// epoch. Nothing is recorded before the epoch, and the transports read an
// earlier time as the epoch: a period that ends there is empty, not one
// whose from is not before its to, unless its from is after the epoch.
func periodStart(t time.Time) time.Time {
	t = t.Truncate(time.Millisecond)
	if t.Before(unixEpoch) {
		return unixEpoch
	}
	return t
}

// usageCursor is where a page of a usage report ends. The groups are
// ordered by key, byte by byte, so the cursor is the last key of a page;
// and as a key may be any text (a model's name), the cursor also names
// the report it belongs to: its project, grouping and period, defaults
// resolved. A cursor of another report would answer a page of this one
// after a key of that one, and pages over periods that differ (the
// default one ends a second after each request) would not add up. As
// text,
//
//	usage:<projectId>:<groupBy>:<from>:<to>:<key>
//
// with from and to in Unix milliseconds, and the key last, so that it may
// hold a ":". The key of the group without one (stateless completions, by
// chat) is empty.
type usageCursor struct {
	projectID string
	groupBy   UsageGroupBy
	from, to  time.Time
	key       string
}

const usageCursorPrefix = "usage:"

// apiTime is the layout of the times the API gives back.
const apiTime = "2006-01-02T15:04:05.000Z"

// maxUsageMilli bounds the times of a usage cursor: the latest a report's
// period can name, the last millisecond of 9999 in UTC (the transports
// refuse a later time).
var maxUsageMilli = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli() - 1

func (c usageCursor) String() string {
	return usageCursorPrefix + c.projectID + ":" + string(c.groupBy) + ":" +
		strconv.FormatInt(c.from.UnixMilli(), 10) + ":" + strconv.FormatInt(c.to.UnixMilli(), 10) + ":" + c.key
}

// validUsageCursor reports whether s is a usage report's cursor.
func validUsageCursor(s string) bool {
	_, ok := parseUsageCursor(s)
	return ok
}

// parseUsageCursor reads a cursor as usageCursor.String writes it. One
// that String could not have written for a report Get answers is not one:
// a grouping not in UsageGroupings, a period that is empty or beyond
// maxUsageMilli, a number written another way, or a key no group can have
// (not UTF-8, or with a NUL, which PostgreSQL refuses even to compare).
func parseUsageCursor(s string) (usageCursor, bool) {
	rest, ok := strings.CutPrefix(s, usageCursorPrefix)
	if !ok {
		return usageCursor{}, false
	}
	parts := strings.SplitN(rest, ":", 5)
	if len(parts) != 5 {
		return usageCursor{}, false
	}
	from, okFrom := parseMilli(parts[2])
	to, okTo := parseMilli(parts[3])
	c := usageCursor{projectID: parts[0], groupBy: UsageGroupBy(parts[1]), key: parts[4]}
	if !validID(PrefixProject, c.projectID) || !slices.Contains(UsageGroupings, c.groupBy) || !okFrom || !okTo || from >= to ||
		!utf8.ValidString(c.key) || strings.IndexByte(c.key, 0) >= 0 {
		return usageCursor{}, false
	}
	c.from, c.to = time.UnixMilli(from).UTC(), time.UnixMilli(to).UTC()
	return c, true
}

// parseMilli reads a time of a usage cursor, in Unix milliseconds.
func parseMilli(digits string) (int64, bool) {
	n, err := strconv.ParseInt(digits, 10, 64)
	return n, err == nil && n >= 0 && n <= maxUsageMilli && strconv.FormatInt(n, 10) == digits
}

// check reports, as an Invalid naming cursor, how the report in asks for
// differs from the one c belongs to: another project, another grouping, or
// another period. From and To left out are c's.
func (c usageCursor) check(in UsageInput) error {
	const again = "; ask for its next page with the same groupBy, from and to (or without from and to), or leave cursor out to start a new report"
	switch {
	case c.projectID != in.ProjectID:
		return Invalidf("cursor", "cursor belongs to the usage report of another project; pass the nextCursor of the previous page of this report unchanged")
	case c.groupBy != in.GroupBy:
		return Invalidf("cursor", "cursor belongs to the usage report grouped by %s"+again, c.groupBy)
	case !in.From.IsZero() && !periodStart(in.From).Equal(c.from),
		!in.To.IsZero() && !in.To.Truncate(time.Millisecond).Equal(c.to):
		return Invalidf("cursor", "cursor belongs to the usage report from %s to %s"+again,
			c.from.Format(apiTime), c.to.Format(apiTime))
	}
	return nil
}
