package models

import (
	"maps"
	"testing"
)

// FuzzConfigFlag sets --model-config. Set must fail leaving the value as it
// was, or hold a map that String prints back to the same map.
func FuzzConfigFlag(f *testing.F) {
	for _, s := range []string{`{"width": 32, "classes": 200, "image_size": 64}`, `{}`, `null`, `{"width": 1.5}`, `width=3`, `{"a": 1, "a": 2}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c := Config{"keep": 1}
		flag := ConfigFlag{P: &c}
		if err := flag.Set(s); err != nil {
			if !maps.Equal(c, Config{"keep": 1}) {
				t.Fatalf("a failed Set changed the value to %v", c)
			}
			return
		}
		if len(c) == 0 {
			return // printed as "", the flag's unset value
		}
		var again Config
		if err := (ConfigFlag{P: &again}).Set(flag.String()); err != nil || !maps.Equal(again, c) {
			t.Fatalf("%v printed as %q sets %v (%v)", c, flag.String(), again, err)
		}
	})
}
