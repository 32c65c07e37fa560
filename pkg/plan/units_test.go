package plan

import (
	"math"
	"strings"
	"testing"
)

// TestParseRate: bits and bytes with decimal and binary prefixes, by hand
// (10 Gbit/s = 1.25·10⁹ B/s); a number without a unit, a bare prefix and
// non-positive rates are refused with the accepted forms named.
func TestParseRate(t *testing.T) {
	for in, want := range map[string]float64{
		"10Gbit":    1.25e9,
		"25Gbit":    3.125e9,
		"100Gbit":   12.5e9,
		"25Gb/s":    3.125e9,
		"100Gbps":   12.5e9,
		"10 gbit/s": 1.25e9,
		"2.9GB/s":   2.9e9,
		"800MB/s":   8e8,
		"1.5GiB/s":  1.5 * (1 << 30),
		"1Kibit":    128,
		"2.1e9B/s":  2.1e9,
		"3Bps":      3,
	} {
		got, err := ParseRate(in)
		if err != nil || math.Abs(got-want) > 1e-9*want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"25", "10G", "fast", "-1Gbit", "0Gbit", "10Gbyte", "1e999GB/s", ""} {
		if _, err := ParseRate(in); err == nil || !strings.Contains(err.Error(), "rate") {
			t.Errorf("ParseRate(%q): want an error, got %v", in, err)
		}
	}
}

// TestParseCount: plain and prefixed counts; zero, negatives and unknown
// suffixes are refused.
func TestParseCount(t *testing.T) {
	for in, want := range map[string]int64{"23834568": 23834568, "23.8M": 23800000, "44.5M": 44500000, "1k": 1000, "2G": 2e9, "1e6": 1e6} {
		if got, err := ParseCount(in); err != nil || got != want {
			t.Errorf("ParseCount(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"0", "-3", "1.5x", "M", "0.4"} {
		if _, err := ParseCount(in); err == nil || !strings.Contains(err.Error(), "count") {
			t.Errorf("ParseCount(%q): want an error, got %v", in, err)
		}
	}
}

// TestFormatRate: bits and bytes side by side with three significant digits.
func TestFormatRate(t *testing.T) {
	for in, want := range map[float64]string{3.125e9: "25 Gbit/s (3.12 GB/s)", 1.25e9: "10 Gbit/s (1.25 GB/s)", 100: "800 bit/s (100 B/s)"} {
		if got := FormatRate(in); got != want {
			t.Errorf("FormatRate(%v) = %q, want %q", in, got, want)
		}
	}
}
