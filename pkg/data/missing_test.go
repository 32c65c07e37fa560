package data_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/logitpair/logitpair/pkg/data"
	"github.com/logitpair/logitpair/pkg/data/datatest"
)

// TestMissingDatasetSaysHowToGetIt: a dataset whose files are not in the
// directory is a *MissingError naming the directory, what is missing and
// what is expected, and how to get it: the `logitpair data fetch` command
// for the datasets Fetch gets, a download for the others.
func TestMissingDatasetSaysHowToGetIt(t *testing.T) {
	root := t.TempDir()
	empty := filepath.Join(root, "empty")
	os.MkdirAll(empty, 0o755)
	gone := filepath.Join(root, "gone")
	half := filepath.Join(root, "half") // MNIST with its test files only
	datatest.WriteMNIST(t, half, 4, 1)
	for _, f := range []string{data.MNISTTrainImages, data.MNISTTrainLabels} {
		if err := os.Remove(filepath.Join(half, f+".gz")); err != nil {
			t.Fatal(err)
		}
	}
	spaced := filepath.Join(root, "my data")
	opts := data.OpenOptions{H: 8, W: 8}
	cases := []struct {
		name, dir, split string
		o                data.OpenOptions
		want             []string
	}{
		{"mnist", gone, "train", opts, []string{"mnist train split not found in " + gone, gone + " does not exist",
			"expected: train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-images",
			"get it with: logitpair data fetch mnist --dir " + gone}},
		{"mnist", half, "train", opts, []string{"missing train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz] (",
			"logitpair data fetch mnist --dir " + half}},
		{"mnist", half, "train", opts.WithShared(nil), []string{"missing train-images-idx3-ubyte[.gz]", "logitpair data fetch mnist"}},
		{"fashion-mnist", empty, "test", opts, []string{"fashion-mnist test split", "missing t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]",
			"logitpair data fetch fashion-mnist --dir " + empty}},
		{"fashion-mnist", spaced, "test", opts, []string{"logitpair data fetch fashion-mnist --dir '" + spaced + "'"}},
		{"cifar10", empty, "train", opts, []string{"missing data_batch_1.bin, data_batch_2.bin, data_batch_3.bin, data_batch_4.bin, data_batch_5.bin",
			"cannot get it", "cifar-10-binary.tar.gz"}},
		{"cifar10", gone, "test", opts.WithShared(nil), []string{gone + " does not exist", "test_batch.bin"}},
		{"svhn", empty, "test", opts, []string{"missing test_32x32.mat", "housenumbers"}},
		{"tiny-imagenet", empty, "train", opts, []string{"missing train/", "tiny-imagenet-200.zip"}},
		{"tiny-imagenet", gone, "test", opts, []string{gone + " does not exist", "tiny-imagenet-200.zip"}},
		{"imagefolder", empty, "test", opts, []string{"missing val/ or test/", "one folder per class"}},
		{"imagenet", empty, "test", opts, []string{"missing val/", "image-net.org"}},
	}
	for _, c := range cases {
		_, err := data.Open(c.name, c.dir, c.split, c.o)
		var me *data.MissingError
		if !errors.As(err, &me) {
			t.Errorf("%s in %s (%s): %v, want a *MissingError", c.name, c.dir, c.split, err)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s in %s (%s): %q does not say %q", c.name, c.dir, c.split, err, w)
			}
		}
	}
	// Load (without Open) says the same; the split present opens.
	if _, err := data.Load("mnist", half, "train"); !strings.Contains(err.Error(), "logitpair data fetch mnist --dir "+half) {
		t.Errorf("Load: %v", err)
	}
	if _, err := data.Open("mnist", half, "test", opts); err != nil {
		t.Errorf("the test split is there: %v", err)
	}
}
