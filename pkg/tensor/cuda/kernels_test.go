package cuda

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

// Every kernel the Go side launches is defined in kernels.cu, and every
// kernel defined there is launched (no dead or misspelled names).
func TestKernelSourceDefinesEveryKernel(t *testing.T) {
	defined := definedKernels(kernelSource)
	if len(defined) == 0 {
		t.Fatal("no extern \"C\" __global__ kernels found in kernels.cu")
	}
	seen := map[string]bool{}
	for _, n := range defined {
		if seen[n] {
			t.Errorf("kernel %s is defined twice", n)
		}
		seen[n] = true
	}
	for _, n := range kernelNames {
		if !seen[n] {
			t.Errorf("kernel %s is launched from Go but not defined in kernels.cu", n)
		}
	}
	for _, n := range defined {
		if !slices.Contains(kernelNames, n) {
			t.Errorf("kernel %s is defined in kernels.cu but missing from kernelNames", n)
		}
	}
}

// Every kernel name passed to run in the Go sources is in kernelNames.
func TestGoLaunchesOnlyListedKernels(t *testing.T) {
	files, err := goSources()
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`\.run\("([a-z0-9_]+)"`)
	found := 0
	for name, src := range files {
		for _, m := range re.FindAllStringSubmatch(src, -1) {
			found++
			if !slices.Contains(kernelNames, m[1]) {
				t.Errorf("%s launches %s, which is not in kernelNames", name, m[1])
			}
		}
	}
	if found == 0 {
		t.Fatal("found no kernel launches in the Go sources")
	}
}

// A syntax sanity check without nvcc: comments and strings removed, the
// source's brackets balance and every kernel body is closed.
func TestKernelSourceBracketsBalance(t *testing.T) {
	src := stripComments(kernelSource)
	var stack []rune
	pairs := map[rune]rune{')': '(', ']': '[', '}': '{'}
	line := 1
	for _, r := range src {
		switch r {
		case '\n':
			line++
		case '(', '[', '{':
			stack = append(stack, r)
		case ')', ']', '}':
			if len(stack) == 0 || stack[len(stack)-1] != pairs[r] {
				t.Fatalf("kernels.cu line %d: unbalanced %q", line, r)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) != 0 {
		t.Fatalf("kernels.cu: %d unclosed brackets at the end", len(stack))
	}
	if strings.Contains(src, "#include") {
		t.Error("kernels.cu includes a header: NVRTC compiles it without the CUDA include path")
	}
}

func stripComments(s string) string {
	s = regexp.MustCompile(`(?s)/\*.*?\*/`).ReplaceAllString(s, "")
	s = regexp.MustCompile(`//[^\n]*`).ReplaceAllString(s, "")
	return regexp.MustCompile(`'(\\.|[^'\\])'`).ReplaceAllString(s, "' '")
}

func TestPickArch(t *testing.T) {
	supported := []int{50, 52, 60, 70, 75, 80, 86, 90}
	for _, c := range []struct{ cc, want int }{
		{86, 86}, {89, 86}, {90, 90}, {100, 90}, {61, 60}, {35, 50},
	} {
		if got := pickArch(c.cc, supported); got != c.want {
			t.Errorf("pickArch(%d) = %d, want %d", c.cc, got, c.want)
		}
	}
	if got := pickArch(75, nil); got != 75 {
		t.Errorf("pickArch without a list = %d, want the device's 75", got)
	}
}
