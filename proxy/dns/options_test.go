package dns

import (
	"fmt"
	"testing"

	"github.com/gatehouse-filter/gatehouse/config"
)

// The resolver's own default ACL (used when Options names none) is the
// config's default clients.allow, so a library user and `serve` agree.
func TestDefaultACLMatchesConfig(t *testing.T) {
	if got, want := fmt.Sprint(DefaultACL()), fmt.Sprint(config.DefaultAllow); got != want {
		t.Fatalf("DefaultACL %s, config.DefaultAllow %s", got, want)
	}
}
