package console

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestPasswordPolicy(t *testing.T) {
	email := "j.smith@school.example"
	for _, tc := range []struct {
		pw   string
		want string // "" accepted; else a word in the message
	}{
		{"short1!", "at least 12"},
		{"j.smith@school.example", "account name"},
		{"xx j.smith@school.example!", "account name"},
		{"j.smithIsGreat42", "account name"},
		{"aaaaaaaaaaaaaaa", "fewer than 5"},
		{"qwertyuiop[]", "common passwords"},
		{"1234567890-=", "common passwords"},
		{"Summer2026!!!", "common word"},
		{"Password12345!", "common word"},
		{"Safeguarding2025", "common word"},
		{"Football 1234", "common word"},
		{"copper kettle violin harbour", ""},
		{"Tr0ub4dor&3xtra", ""},
	} {
		err := CheckPassword(email, tc.pw)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q refused: %v", tc.pw, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrWeakPassword)):
			t.Errorf("%q: %v, want refusal mentioning %q", tc.pw, err, tc.want)
		}
	}
}

func TestHashPassword(t *testing.T) {
	h, err := HashPassword(goodPass)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q", h)
	}
	if !checkHash(h, goodPass) || checkHash(h, goodPass+"x") {
		t.Fatal("checkHash")
	}
	h2, _ := HashPassword(goodPass)
	if h == h2 {
		t.Fatal("no salt")
	}
	for _, bad := range []string{"", "$argon2id$", "$argon2i$v=19$m=1,t=1,p=1$AA$AA", "$argon2id$v=19$m=9999999,t=1,p=1$AA$AA"} {
		if checkHash(bad, goodPass) {
			t.Errorf("accepted %q", bad)
		}
	}
}

// TestTOTPVectors: RFC 6238 appendix B (SHA-1, 8 digits there; the last
// 6 digits are the 6-digit code).
func TestTOTPVectors(t *testing.T) {
	secret := b32.EncodeToString([]byte("12345678901234567890"))
	for _, v := range []struct {
		unix int64
		code string
	}{{59, "94287082"}, {1111111109, "07081804"}, {1111111111, "14050471"}, {1234567890, "89005924"}, {2000000000, "69279037"}, {20000000000, "65353130"}} {
		got, err := TOTPCode(secret, time.Unix(v.unix, 0))
		if err != nil || got != v.code[2:] {
			t.Errorf("t=%d: %s %v, want %s", v.unix, got, err, v.code[2:])
		}
	}
	uri := TOTPURI("Gatehouse (Test Primary)", "dsl@school.example", secret)
	if !strings.HasPrefix(uri, "otpauth://totp/Gatehouse%20%28Test%20Primary%29:dsl@school.example?") || !strings.Contains(uri, "secret="+secret) {
		t.Errorf("uri %s", uri)
	}
}

// TestEnableSignsInAgain: a disabled account cannot sign in; enabled, it
// can, and failures from before are forgotten.
func TestEnableSignsInAgain(t *testing.T) {
	r := newRig(t, false)
	r.add("gov@school.example", RoleAuditor, goodPass, false)
	if err := r.st.Disable("cli:test", "cli", "gov@school.example", r.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if p := r.signIn(r.client(), "gov@school.example", goodPass, ""); p.status != 401 {
		t.Fatalf("disabled account signed in: %d at %s", p.status, p.url)
	}
	if ok, err := r.st.Enable("cli:test", "cli", "gov@school.example", r.clock.Now()); !ok || err != nil {
		t.Fatalf("enable: %v %v", ok, err)
	}
	if p := r.signIn(r.client(), "gov@school.example", goodPass, ""); p.status != 200 || p.url != "/" {
		t.Fatalf("enabled account: %d at %s", p.status, p.url)
	}
	if ok, err := r.st.Enable("cli:test", "cli", "gov@school.example", r.clock.Now()); ok || err != nil {
		t.Fatalf("enable an active account: %v %v", ok, err)
	}
}
