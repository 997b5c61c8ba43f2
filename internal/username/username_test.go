package username

import "testing"

func TestCanon(t *testing.T) {
	for in, want := range map[string]string{
		"amira.khan": "amira.khan", "Amira.Khan": "amira.khan", "AMIRA@PUPILS.EXAMPLE": "amira@pupils.example",
		"ZOË.SMITH": "zoë.smith", "": "", "amira.khan ": "amira.khan", " amira.khan": "amira.khan",
		"ａｍｉｒａ.khan": "amira.khan", "Amira.Khan\u00a0": "amira.khan", "amira  khan": "amira khan",
		"amira\tkhan": "amira khan", "Zoe\u0308.smith": "zoë.smith", "   ": "",
	} {
		if got := Canon(in); got != want {
			t.Errorf("Canon(%q) = %q, want %q", in, got, want)
		}
		if got := Canon(want); got != want {
			t.Errorf("Canon(%q) = %q: not stable", want, got)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = Canon("amira.khan") }); n != 0 {
		t.Errorf("Canon of a name in its form allocates %v times", n)
	}
}
