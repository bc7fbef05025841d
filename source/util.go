package source

import (
	"crypto/rand"
	"encoding/binary"
)

func nativeU32(b []byte) uint32 { return binary.NativeEndian.Uint32(b) }

// randUint32 returns a random number for a connector ack or initial seq.
func randUint32() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported systems
	return binary.NativeEndian.Uint32(b[:])
}
