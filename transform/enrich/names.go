package enrich

import (
	"errors"
	"os/user"
	"strconv"
)

// lookupUser resolves a uid with os/user: the C library (and so NSS) when
// built with cgo, /etc/passwd otherwise.
func lookupUser(uid uint32) (string, error) {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return "", err
	}
	return u.Username, nil
}

// lookupGroup resolves a gid with os/user.
func lookupGroup(gid uint32) (string, error) {
	g, err := user.LookupGroupId(strconv.FormatUint(uint64(gid), 10))
	if err != nil {
		return "", err
	}
	return g.Name, nil
}

// notFound reports the errors of os/user that mean "no such id", as
// opposed to a failure of the lookup itself.
func notFound(err error) bool {
	var u user.UnknownUserIdError
	var g user.UnknownGroupIdError
	return errors.As(err, &u) || errors.As(err, &g)
}

// nameCache maps ids to names, remembering failed lookups too, for ttl
// nanoseconds of event time, least recently used out beyond max entries.
// Time is the events' CLOCK_MONOTONIC timestamps, so the cache reads no
// clock.
type nameCache struct {
	lookup func(uint32) (string, error)
	max    int
	ttl    uint64
	m      map[uint32]*nameEntry
	head   nameEntry // ring sentinel: head.next is the most recently used
}

type nameEntry struct {
	id         uint32
	name       string
	ok         bool   // found
	expires    uint64 // event time after which to look again
	prev, next *nameEntry
}

func (c *nameCache) init(lookup func(uint32) (string, error), max int, ttl uint64) {
	c.lookup, c.max, c.ttl = lookup, max, ttl
	c.m = make(map[uint32]*nameEntry)
	c.head.prev, c.head.next = &c.head, &c.head
}

// get returns the name of id at event time now; hit says it came from the
// cache; lookupErr is a lookup failure other than "not found".
func (c *nameCache) get(id uint32, now uint64) (name string, hit, lookupErr bool) {
	e := c.m[id]
	if e != nil && now < e.expires {
		c.unlink(e)
		c.pushFront(e)
		return e.name, true, false
	}
	n, err := c.lookup(id)
	if e == nil {
		if len(c.m) >= c.max {
			old := c.head.prev
			c.unlink(old)
			delete(c.m, old.id)
			e = old // reuse
		} else {
			e = new(nameEntry)
		}
		*e = nameEntry{id: id}
		c.m[id] = e
	} else {
		c.unlink(e)
	}
	e.name, e.ok = n, err == nil
	if !e.ok {
		e.name = ""
	}
	e.expires = now + c.ttl
	if e.expires < now { // overflow: keep for ever
		e.expires = ^uint64(0)
	}
	c.pushFront(e)
	return e.name, false, err != nil && !notFound(err)
}

func (c *nameCache) unlink(e *nameEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (c *nameCache) pushFront(e *nameEntry) {
	e.prev, e.next = &c.head, c.head.next
	c.head.next.prev = e
	c.head.next = e
}
