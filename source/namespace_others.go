//go:build !linux

package source

// ReadPrivileges returns an empty Privileges: nothing is known on this
// system (it has no kernel connector).
func ReadPrivileges() Privileges { return Privileges{} }
