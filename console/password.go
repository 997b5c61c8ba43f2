package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"golang.org/x/crypto/argon2"
)

// MinPasswordLen is the shortest password accepted (the AUP's "strong
// password", counted in characters).
const MinPasswordLen = 12

// argon2id parameters: OWASP's second recommended set (19 MiB, 2 passes,
// 1 lane), affordable on a small school server.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
)

// HashPassword returns an argon2id PHC string for password.
func HashPassword(password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		b.EncodeToString(salt), b.EncodeToString(key)), nil
}

// checkHash reports whether password matches a PHC string from
// HashPassword (with whatever parameters it records).
func checkHash(phc, password string) bool {
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var v int
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return false
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m == 0 || t == 0 || p == 0 || m > 1<<20 || t > 16 {
		return false
	}
	b := base64.RawStdEncoding
	salt, err1 := b.DecodeString(parts[4])
	want, err2 := b.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// dummyHash is checked against when an account does not exist, so that
// unknown and known names take the same time.
var dummyHash, _ = HashPassword("gatehouse-no-such-account")

// ErrWeakPassword wraps every password policy refusal.
var ErrWeakPassword = errors.New("password refused")

// CheckPassword applies the password policy for the account name: at
// least MinPasswordLen characters, not containing the name (or its part
// before the @), not one character repeated, not on the common-password
// list and not a common word dressed up with digits and symbols. The
// error says what to do.
func CheckPassword(email, password string) error {
	weak := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrWeakPassword, fmt.Sprintf(format, args...))
	}
	n := len([]rune(password))
	if n < MinPasswordLen {
		return weak("it has %d characters; use at least %d (a passphrase of three or four unrelated words is easy to remember)", n, MinPasswordLen)
	}
	if n > 1024 {
		return weak("it is longer than 1024 characters")
	}
	low := strings.ToLower(password)
	email = NormalEmail(email)
	local, _, _ := strings.Cut(email, "@")
	if low == email || strings.Contains(low, email) || (len(local) >= 3 && strings.Contains(low, local)) {
		return weak("it contains the account name; choose something unrelated to it")
	}
	distinct := map[rune]bool{}
	for _, r := range low {
		distinct[r] = true
	}
	if len(distinct) < 5 {
		return weak("it uses fewer than 5 different characters")
	}
	if common()[low] {
		return weak("it is on the list of common passwords that attackers try first")
	}
	if core := coreWord(low); core != "" && (commonWords()[core] || common()[core]) {
		return weak("it is a common word or pattern (%q) with digits or symbols added; attackers try those first", core)
	}
	return nil
}

// coreWord strips digits, symbols and spaces from password; "" when
// nothing is left.
func coreWord(low string) string {
	var b strings.Builder
	for _, r := range low {
		if unicode.IsLetter(r) {
			b.WriteRune(r)
		}
	}
	return b.String()
}
