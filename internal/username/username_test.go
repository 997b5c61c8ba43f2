package username

import "testing"

func TestCanon(t *testing.T) {
	for in, want := range map[string]string{
		"amira.khan": "amira.khan", "Amira.Khan": "amira.khan", "AMIRA@PUPILS.EXAMPLE": "amira@pupils.example",
		"ZOË.SMITH": "zoë.smith", "": "",
	} {
		if got := Canon(in); got != want {
			t.Errorf("Canon(%q) = %q, want %q", in, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = Canon("amira.khan") }); n != 0 {
		t.Errorf("Canon of a lower-case name allocates %v times", n)
	}
}
