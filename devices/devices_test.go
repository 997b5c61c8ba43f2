package devices

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse-filter/gatehouse/reports"
)

func TestTokenShape(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		tok, err := NewToken()
		if err != nil {
			t.Fatal(err)
		}
		if !ValidToken(tok) || seen[tok] {
			t.Fatalf("token %q invalid or repeated", tok)
		}
		seen[tok] = true
	}
	for _, bad := range []string{"", "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "abcdefghijklmnopqrstuvwxyz23456", "abcdefghijklmnopqrstuvwxyz23456-", "abcdefghijklmnopqrstuvwxyz2345671"} {
		if ValidToken(bad) {
			t.Errorf("ValidToken(%q) = true", bad)
		}
	}
}

func TestAddListRevokeLoad(t *testing.T) {
	st, err := reports.Open(filepath.Join(t.TempDir(), "g.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx, db, now := context.Background(), st.DB(), time.Now()
	tok, err := Add(ctx, db, "Laptop-12", "students", now)
	if err != nil {
		t.Fatal(err)
	}
	tok2, err := Add(ctx, db, "Laptop-13", "staff", now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Add(ctx, db, "Laptop-12", "students", now); !errors.Is(err, ErrExists) {
		t.Fatalf("second Laptop-12: %v, want ErrExists", err)
	}
	// The token is not in the database: only its hash.
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM devices WHERE CAST(token_sha256 AS TEXT) LIKE ? OR name LIKE ?`, "%"+tok+"%", "%"+tok+"%").Scan(&n); err != nil || n != 0 {
		t.Fatalf("token found in the table (%d, %v)", n, err)
	}
	var r Registry
	if changed, err := r.Load(ctx, db); err != nil || !changed {
		t.Fatalf("Load: %v %v", changed, err)
	}
	if d := r.Lookup(tok); d == nil || d.Name != "Laptop-12" || d.Group != "students" {
		t.Fatalf("Lookup = %+v", d)
	}
	if changed, _ := r.Load(ctx, db); changed {
		t.Fatal("Load without a change reloaded")
	}
	if err := Revoke(ctx, db, "Laptop-12", now); err != nil {
		t.Fatal(err)
	}
	if err := Revoke(ctx, db, "Laptop-12", now); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second revoke: %v", err)
	}
	if changed, err := r.Load(ctx, db); err != nil || !changed {
		t.Fatalf("Load after revoke: %v %v", changed, err)
	}
	if d := r.Lookup(tok); d != nil {
		t.Fatalf("revoked token still looked up: %+v", d)
	}
	if d := r.Lookup(tok2); d == nil || d.Name != "Laptop-13" {
		t.Fatalf("other device lost: %+v", d)
	}
	// The name can be enrolled again (a new token).
	if _, err := Add(ctx, db, "Laptop-12", "students", now); err != nil {
		t.Fatal(err)
	}
	l, err := List(ctx, db)
	if err != nil || len(l) != 3 || l[0].Revoked.IsZero() == l[1].Revoked.IsZero() {
		t.Fatalf("List = %+v, %v", l, err)
	}
}

func TestDeviceAllow(t *testing.T) {
	var d Device
	now := time.Unix(1000, 0)
	n := 0
	for range 100 {
		if d.Allow(now, 10, 20) {
			n++
		}
	}
	if n != 20 {
		t.Fatalf("burst allowed %d, want 20", n)
	}
	if !d.Allow(now.Add(200*time.Millisecond), 10, 20) {
		t.Fatal("refill refused")
	}
}

var sink *Device

func BenchmarkLookup(b *testing.B) {
	var r Registry
	var es []Entry
	var tok string
	for i := range 10000 {
		t, _ := NewToken()
		es = append(es, Entry{Hash: Hash(t), Name: "d", Group: "g"})
		if i == 5000 {
			tok = t
		}
	}
	r.Set(es)
	b.ReportAllocs()
	for b.Loop() {
		sink = r.Lookup(tok)
	}
	if sink == nil {
		b.Fatal("not found")
	}
}
