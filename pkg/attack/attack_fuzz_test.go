package attack

import (
	"strings"
	"testing"
)

// FuzzParse parses an attack string (--attack, a config file's attack key,
// eval's attack list). Parse must fail naming the string, or return a
// configuration that passes Validate, whose target matches the string's
// family, and with a random start exactly for the PGD and fgsmrs families.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"pgd_76.5_2.55_40", "pgdll_8_2_7", "pgdrnd_16_1_10", "fgsm_8", "fgsmrs_4", "stepll_16", "pgd_8_2", "pgd_1e400_1_1", "xyz_1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(s)
		if err != nil {
			if !strings.Contains(err.Error(), "attack") {
				t.Fatalf("error %q does not say it is about the attack", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse(%q) accepted an invalid configuration: %v", s, err)
		}
		family, _, _ := strings.Cut(s, "_")
		wantStart := map[string]bool{"pgd": true, "pgdll": true, "pgdrnd": true, "fgsmrs": true, "fgsm": false, "stepll": false}
		want, known := wantStart[family]
		if !known {
			t.Fatalf("Parse accepted the unknown family %q", family)
		}
		if c.RandomStart != want {
			t.Fatalf("%q: random start %v, want %v", s, c.RandomStart, want)
		}
		if target := map[string]Target{"pgd": Predicted, "pgdll": LeastLikely, "pgdrnd": RandomClass}[family]; strings.HasPrefix(family, "pgd") && c.Target != target {
			t.Fatalf("%q: target %v, want %v", s, c.Target, target)
		}
	})
}
