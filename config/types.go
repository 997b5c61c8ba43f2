package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written as "90s", "15m", "12h" or "30d".
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) MarshalText() ([]byte, error) {
	td := time.Duration(d)
	if td != 0 && td%(24*time.Hour) == 0 {
		return []byte(strconv.FormatInt(int64(td/(24*time.Hour)), 10) + "d"), nil
	}
	return []byte(td.String()), nil
}

func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if n, ok := strings.CutSuffix(s, "d"); ok {
		v, err := strconv.ParseUint(n, 10, 32)
		if err != nil {
			return fmt.Errorf("invalid duration %q (e.g. 90s, 15m, 12h, 30d)", s)
		}
		if maxDays := uint64(math.MaxInt64 / int64(24*time.Hour)); v > maxDays {
			// More would wrap round to a negative or short duration.
			return fmt.Errorf("invalid duration %q: too long (at most %dd)", s, maxDays)
		}
		*d = Duration(time.Duration(v) * 24 * time.Hour)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("invalid duration %q (e.g. 90s, 15m, 12h, 30d)", s)
	}
	*d = Duration(v)
	return nil
}

// ByteSize is a size written as 1048576, "512KiB", "64MiB" or "1GiB".
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"B", 1},
}

func (b ByteSize) MarshalText() ([]byte, error) {
	for _, u := range byteUnits[:3] {
		if b >= ByteSize(u.mult) && int64(b)%u.mult == 0 && (u.suffix == "GiB" || int64(b) < u.mult<<10) {
			return []byte(strconv.FormatInt(int64(b)/u.mult, 10) + u.suffix), nil
		}
	}
	return []byte(strconv.FormatInt(int64(b), 10)), nil
}

func (b *ByteSize) UnmarshalText(t []byte) error {
	s := strings.TrimSpace(string(t))
	mult := int64(1)
	for _, u := range byteUnits {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 || v > (1<<62)/mult {
		return fmt.Errorf("invalid size %q (e.g. 64MiB, 1GiB)", string(t))
	}
	*b = ByteSize(v * mult)
	return nil
}

// ClockTime is a time of day, HH:MM, as minutes after midnight.
type ClockTime int

func (c ClockTime) String() string { return fmt.Sprintf("%02d:%02d", int(c)/60, int(c)%60) }

func (c ClockTime) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

func (c *ClockTime) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	h, m, ok := strings.Cut(s, ":")
	hv, err1 := strconv.Atoi(h)
	mv, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || len(m) != 2 || hv < 0 || hv > 24 || mv < 0 || mv > 59 || (hv == 24 && mv != 0) {
		return fmt.Errorf("invalid time of day %q (want HH:MM, 00:00 to 24:00)", s)
	}
	*c = ClockTime(hv*60 + mv)
	return nil
}

// Year is how a KeepFor counts a year: 365.25 days.
const Year = 8766 * time.Hour

// KeepFor is a retention written as "keep" (never purged: 0) or a number
// of years ("25y", 1 to 100).
type KeepFor time.Duration

// D returns the value as a duration; 0 means keep.
func (k KeepFor) D() time.Duration { return time.Duration(k) }

func (k KeepFor) MarshalText() ([]byte, error) {
	if k == 0 {
		return []byte("keep"), nil
	}
	return []byte(strconv.FormatInt(int64(time.Duration(k)/Year), 10) + "y"), nil
}

func (k *KeepFor) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "keep" {
		*k = 0
		return nil
	}
	n, ok := strings.CutSuffix(s, "y")
	v, err := strconv.ParseUint(n, 10, 8)
	if !ok || err != nil || v < 1 || v > 100 {
		return fmt.Errorf("invalid retention %q (\"keep\", or years from 1y to 100y, e.g. 25y)", s)
	}
	*k = KeepFor(time.Duration(v) * Year)
	return nil
}
