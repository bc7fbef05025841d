package transform

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/cnstream/cnstream/schema"
)

// Filter keeps or drops events in userspace. An event is kept when it
// matches every include list that is set and no exclude list. Records of
// loss and accounting (schema.Kind.IsLoss) are always kept: a filter never
// hides a loss. What a filter removes is not silent either: the Transformer
// states it per stream and batch in a filtered record (count, first and
// last seq, kinds), so that completeness stays provable with filters on.
//
// comm and exe are values any process controls: a process can rename itself
// (prctl PR_SET_NAME) or run from another path to slip past ExcludeComms or
// ExcludeExes, or to match Comms. That hides its events from the output, not
// from the accounting: the filtered records still count them. Filter on uids
// or containers where evasion matters.
//
// uid, comm, exe and container are matched against what the event carries:
// its own fields (a uid event's ids, a comm event's name) and its enrichment
// (schema.Process). An event that does not carry the field (no enrichment,
// or a process that was gone) does not match an include list, and is not
// excluded by an exclude list.
//
// Dropping events in the kernel instead is source.SubscribeConfig.Events; it
// costs the ACK and exact gap accounting, so the default is to filter here.
type Filter struct {
	Kinds        []schema.Kind
	ExcludeKinds []schema.Kind
	UIDs         []uint32 // real or effective uid
	ExcludeUIDs  []uint32
	Comms        []string // path.Match globs on the command name
	ExcludeComms []string
	Exes         []string // path.Match globs on the executable path
	ExcludeExes  []string
	// Containers are container ids (a prefix of at least 12 characters
	// matches, as docker shows them), "host" for processes outside any
	// container, or "*" for any container.
	Containers        []string
	ExcludeContainers []string
}

type filter struct {
	f     Filter
	empty bool
}

func (f Filter) compile() (*filter, error) {
	for _, g := range slices.Concat(f.Comms, f.ExcludeComms, f.Exes, f.ExcludeExes) {
		if _, err := path.Match(g, ""); err != nil {
			return nil, fmt.Errorf("transform: filter glob %q: %w", g, err)
		}
	}
	for _, c := range slices.Concat(f.Containers, f.ExcludeContainers) {
		if c != "host" && c != "*" && len(c) < 12 {
			return nil, fmt.Errorf("transform: filter container %q: use at least 12 characters of the id, \"host\" or \"*\"", c)
		}
	}
	empty := len(f.Kinds)+len(f.ExcludeKinds)+len(f.UIDs)+len(f.ExcludeUIDs)+len(f.Comms)+len(f.ExcludeComms)+
		len(f.Exes)+len(f.ExcludeExes)+len(f.Containers)+len(f.ExcludeContainers) == 0
	return &filter{f: f, empty: empty}, nil
}

func (f *filter) keep(e *schema.Event) bool {
	if f.empty || e.Kind.IsLoss() {
		return true
	}
	x := &f.f
	if len(x.Kinds) > 0 && !slices.Contains(x.Kinds, e.Kind) || slices.Contains(x.ExcludeKinds, e.Kind) {
		return false
	}
	if len(x.UIDs) > 0 || len(x.ExcludeUIDs) > 0 {
		uids := eventUIDs(e)
		if len(x.UIDs) > 0 && !slices.ContainsFunc(uids, func(u uint32) bool { return slices.Contains(x.UIDs, u) }) {
			return false
		}
		if slices.ContainsFunc(uids, func(u uint32) bool { return slices.Contains(x.ExcludeUIDs, u) }) {
			return false
		}
	}
	if !matchGlobs(x.Comms, x.ExcludeComms, eventComm(e)) || !matchGlobs(x.Exes, x.ExcludeExes, eventExe(e)) {
		return false
	}
	if len(x.Containers) > 0 || len(x.ExcludeContainers) > 0 {
		c, known := eventContainer(e)
		if len(x.Containers) > 0 && (!known || !slices.ContainsFunc(x.Containers, func(p string) bool { return matchContainer(p, c) })) {
			return false
		}
		if known && slices.ContainsFunc(x.ExcludeContainers, func(p string) bool { return matchContainer(p, c) }) {
			return false
		}
	}
	return true
}

func matchGlobs(include, exclude []string, v string) bool {
	if len(include) == 0 && len(exclude) == 0 {
		return true
	}
	if v == "" { // not known
		return len(include) == 0
	}
	match := func(g string) bool { ok, _ := path.Match(g, v); return ok }
	if len(include) > 0 && !slices.ContainsFunc(include, match) {
		return false
	}
	return !slices.ContainsFunc(exclude, match)
}

func matchContainer(pattern string, c *schema.Container) bool {
	switch pattern {
	case "host":
		return c == nil
	case "*":
		return c != nil
	}
	return c != nil && strings.HasPrefix(c.ID, pattern)
}

func eventUIDs(e *schema.Event) []uint32 {
	var u []uint32
	if e.UID != nil {
		u = append(u, e.UID.Real, e.UID.Effective)
	}
	if p := e.Process; p != nil {
		if p.UID != nil {
			u = append(u, *p.UID)
		}
		if p.EUID != nil {
			u = append(u, *p.EUID)
		}
	}
	return u
}

func eventComm(e *schema.Event) string {
	if e.Comm != nil {
		return e.Comm.Comm
	}
	if e.Process != nil {
		return e.Process.Comm
	}
	return ""
}

func eventExe(e *schema.Event) string {
	if e.Process != nil {
		return e.Process.Exe
	}
	return ""
}

// eventContainer returns the event's container (nil: on the host) and
// whether that is known (a process could be read or was in the table).
func eventContainer(e *schema.Event) (*schema.Container, bool) {
	p := e.Process
	if p == nil || p.Source == "gone" || p.Cgroup == "" {
		return nil, false
	}
	return p.Container, true
}

// Validate checks the globs and container ids.
func (f Filter) Validate() error {
	_, err := f.compile()
	return err
}
