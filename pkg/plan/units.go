package plan

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// rateRE splits a rate into number, prefix and unit.
var rateRE = regexp.MustCompile(`^([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgGtT]i?)?(bit/s|bits/s|bit|bps|b/s|B/s|Bps|byte/s|bytes/s)$`)

// ParseRate parses a link or transfer rate and returns it in bytes/s. The
// unit is required and tells bits from bytes: bit, bit/s, bps and b/s are
// bits per second; B/s, Bps and byte/s are bytes per second. A decimal
// prefix k, M, G or T (any case) multiplies by 10³ … 10¹², a binary one
// Ki, Mi, Gi or Ti by 2¹⁰ … 2⁴⁰. Examples: 10Gbit, 25Gb/s, 100Gbps (bits);
// 2.9GB/s, 800MB/s, 1.5GiB/s (bytes).
func ParseRate(s string) (float64, error) {
	m := rateRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("rate %q: want a number and a unit, bits (10Gbit, 25Gb/s, 100Gbps) or bytes (2.9GB/s, 800MB/s, 1.5GiB/s)", s)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("rate %q: %w", s, err)
	}
	v *= prefix(m[2])
	switch m[3] {
	case "B/s", "Bps", "byte/s", "bytes/s":
	default:
		v /= 8
	}
	if !positive(v) {
		return 0, fmt.Errorf("rate %q: must be > 0 and finite", s)
	}
	return v, nil
}

// prefix returns the multiplier of a decimal (k, M, G, T) or binary (Ki,
// Mi, Gi, Ti) prefix, "" giving 1.
func prefix(p string) float64 {
	if p == "" {
		return 1
	}
	exp := strings.Index("kmgt", strings.ToLower(p[:1])) + 1
	if strings.HasSuffix(p, "i") {
		return math.Pow(1024, float64(exp))
	}
	return math.Pow(1000, float64(exp))
}

// countRE splits a count into number and decimal prefix.
var countRE = regexp.MustCompile(`^([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)([kKMG]?)$`)

// ParseCount parses a positive whole count, plain (23834568) or with a
// decimal prefix k, M or G (23.8M = 23,800,000).
func ParseCount(s string) (int64, error) {
	m := countRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("count %q: want a whole number, optionally with k, M or G (e.g. 23834568 or 23.8M)", s)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("count %q: %w", s, err)
	}
	v = math.Round(v * prefix(m[2]))
	if !(v >= 1 && v < 1<<62) {
		return 0, fmt.Errorf("count %q: must be at least 1 (and below 2⁶²)", s)
	}
	return int64(v), nil
}

// FormatRate writes a rate given in bytes/s as bits and bytes per second,
// e.g. "25 Gbit/s (3.12 GB/s)".
func FormatRate(bytesPerSec float64) string {
	return fmt.Sprintf("%s/s (%s/s)", si(8*bytesPerSec, "bit"), si(bytesPerSec, "B"))
}

// si writes v with a decimal prefix and three significant digits.
func si(v float64, unit string) string {
	for _, p := range []struct {
		mult float64
		name string
	}{{1e12, "T"}, {1e9, "G"}, {1e6, "M"}, {1e3, "k"}} {
		if math.Abs(v) >= p.mult {
			return fmt.Sprintf("%.3g %s%s", v/p.mult, p.name, unit)
		}
	}
	return fmt.Sprintf("%.3g %s", v, unit)
}
