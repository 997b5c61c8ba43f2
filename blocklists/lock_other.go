//go:build !unix

package blocklists

import "context"

// lockFile is a no-op where flock is not available (see lock_unix.go):
// downloads of one feed by two processes are then not serialised.
func lockFile(context.Context, string) (func(), error) { return func() {}, nil }
