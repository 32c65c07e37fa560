package data

import (
	"fmt"
	"strings"
)

// MissingError reports a dataset split whose files are not in its directory
// (Open, Load): what is missing, what the directory should hold, and how to
// get it — `logitpair data fetch` for the datasets Fetch gets, a download
// for the others (docs/DATASETS.md).
type MissingError struct {
	Dataset string
	Dir     string
	Split   string
	// Missing lists what was looked for and not found, relative to Dir
	// (e.g. "train-images-idx3-ubyte[.gz]", "train/"); empty when Dir
	// itself does not exist.
	Missing []string
}

func (e *MissingError) Error() string {
	what := e.Dir + " does not exist"
	if len(e.Missing) > 0 {
		what = "missing " + strings.Join(e.Missing, ", ")
	}
	return fmt.Sprintf("data: %s %s split not found in %s: %s (expected: %s); %s",
		e.Dataset, e.Split, e.Dir, what, Layout(e.Dataset), HowToGet(e.Dataset, e.Dir))
}

// Fetchable reports whether Fetch (`logitpair data fetch`) gets the dataset.
func Fetchable(name string) bool { return name == "mnist" || name == "fashion-mnist" }

// Layout says which files a dataset's directory holds.
func Layout(name string) string {
	switch name {
	case "mnist", "fashion-mnist":
		return strings.Join([]string{MNISTTrainImages, MNISTTrainLabels, MNISTTestImages, MNISTTestLabels}, "[.gz], ") + "[.gz]"
	case "cifar10", "cifar-10":
		return "CIFAR-10's binary version, data_batch_1.bin … data_batch_5.bin and test_batch.bin, in the folder or its cifar-10-batches-bin/"
	case "svhn":
		return "SVHN's cropped digits, train_32x32.mat and test_32x32.mat"
	case TinyImageNet:
		return tinyLayout
	case ImageFolderName:
		return folderLayout
	case ImageNet:
		return inetLayout
	}
	return "see docs/DATASETS.md"
}

// HowToGet says how to put a dataset into dir: the `logitpair data fetch`
// command for the datasets Fetch gets, else where to download it.
func HowToGet(name, dir string) string {
	switch name {
	case "mnist", "fashion-mnist":
		return fmt.Sprintf("get it with: logitpair data fetch %s --dir %s", name, shellQuote(dir))
	case "cifar10", "cifar-10":
		return fmt.Sprintf("`logitpair data fetch` cannot get it: download https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz and unpack it there (mkdir -p %[1]s && tar xzf cifar-10-binary.tar.gz -C %[1]s); docs/DATASETS.md", shellQuote(dir))
	case "svhn":
		return "`logitpair data fetch` cannot get it: download http://ufldl.stanford.edu/housenumbers/train_32x32.mat and test_32x32.mat into that folder; docs/DATASETS.md"
	case TinyImageNet:
		return "`logitpair data fetch` cannot get it: download http://cs231n.stanford.edu/tiny-imagenet-200.zip, unzip it and give its tiny-imagenet-200 folder as --data-dir; docs/DATASETS.md"
	case ImageNet:
		return "`logitpair data fetch` cannot get it: ILSVRC2012 is downloaded from https://image-net.org (registration needed) and laid out as docs/DATASETS.md shows"
	case ImageFolderName:
		return "put the images into one folder per class as docs/DATASETS.md shows"
	}
	return "see docs/DATASETS.md"
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./+,:@=", r))
	}) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
