//go:build !linux

package source

import (
	"context"
	"time"

	"github.com/cnstream/cnstream/schema"
)

// Conn is a NETLINK_CONNECTOR socket; on this system every call returns
// ErrNotSupported.
type Conn struct{}

type batchSys struct{}

// Dial returns ErrNotSupported: the kernel connector exists only on Linux.
func Dial(Config) (*Conn, error) { return nil, ErrNotSupported }

func (c *Conn) PortID() uint32                                   { return 0 }
func (c *Conn) JoinGroup(uint32) error                           { return ErrNotSupported }
func (c *Conn) LeaveGroup(uint32) error                          { return ErrNotSupported }
func (c *Conn) Send(schema.CnMsg, uint32) error                  { return ErrNotSupported }
func (c *Conn) ReadBatch(context.Context, *Batch) (int, error)   { return 0, ErrNotSupported }
func (c *Conn) CheckDrops() (uint64, error)                      { return 0, ErrNotSupported }
func (c *Conn) Subscribe(context.Context, SubscribeConfig) error { return ErrNotSupported }
func (c *Conn) Stats() Stats                                     { return Stats{} }
func (c *Conn) Close() error                                     { return nil }
func (c *Conn) Quiesce() error                                   { return ErrNotSupported }

// ClockOffset returns ErrNotSupported.
func ClockOffset() (time.Duration, error) { return 0, ErrNotSupported }

// Monotonic returns ErrNotSupported.
func Monotonic() (uint64, error) { return 0, ErrNotSupported }

// BootOffset returns ErrNotSupported.
func BootOffset() (time.Duration, error) { return 0, ErrNotSupported }
