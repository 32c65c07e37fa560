package nn_test

import (
	"errors"
	"math"
	"math/rand"
	"strings"
)

func newRand(seed int64) *rand.Rand   { return rand.New(rand.NewSource(seed)) }
func errorsIs(err, target error) bool { return errors.Is(err, target) }
func contains(s, sub string) bool     { return strings.Contains(s, sub) }
func nanOf() float32                  { return float32(math.NaN()) }
