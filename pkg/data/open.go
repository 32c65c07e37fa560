package data

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Image-folder dataset names Open knows besides Load's fixed formats.
const (
	TinyImageNet    = "tiny-imagenet"
	ImageFolderName = "imagefolder"
	ImageNet        = "imagenet"
)

// ImageNet validation files Open looks for (in the data directory, then in
// its val/ folder) when val/ is flat.
const (
	// ImageNetGroundTruth is the devkit's ground truth: one 1-based
	// ILSVRC2012 ID per line, line k for the k-th validation image in
	// file-name order.
	ImageNetGroundTruth = "ILSVRC2012_validation_ground_truth.txt"
	// ImageNetIDWNIDs lists the WNID of each ILSVRC2012 ID, line k for ID k
	// (the order of the devkit's meta.mat, which is not the sorted-WNID
	// order of train/'s labels).
	ImageNetIDWNIDs = "ILSVRC2012_id_wnids.txt"
)

// DefaultMaxInMemory is OpenOptions.MaxInMemory's default: image folders
// that decode to at most 256 MiB of float32 are decoded once when opened.
const DefaultMaxInMemory = 256 << 20

// Datasets lists the dataset names Open accepts.
func Datasets() []string {
	return []string{"mnist", "fashion-mnist", "cifar10", "svhn", TinyImageNet, ImageFolderName, ImageNet}
}

// IsFolderDataset reports whether name is an image-folder dataset, whose
// image size is chosen by the caller (OpenOptions) rather than the files.
func IsFolderDataset(name string) bool {
	switch name {
	case TinyImageNet, ImageFolderName, ImageNet:
		return true
	}
	return false
}

// ForInput is the OpenOptions of a model with input shape (C, H, W):
// image folders are opened at the model's H×W.
func ForInput(input [3]int) OpenOptions { return OpenOptions{H: input[1], W: input[2]} }

// OpenOptions are the settings of Open's image-folder datasets (the fixed
// formats ignore them).
type OpenOptions struct {
	// H, W is the size of the images an image-folder dataset yields: the
	// model's input size (image_size). Required for image folders.
	H, W int
	// Resize is the length the shorter side of every image is resized to
	// (bilinear) before the center H×W crop; 0 means max(H, W), so the
	// whole shorter side is kept. See PreprocessImage.
	Resize int
	// MaxInMemory: an image folder whose decoded size (N·3·H·W float32) is
	// at most this many bytes is decoded once, when opened, so that a
	// corrupt image is reported before training starts; larger ones are
	// decoded on demand (a corrupt image is then reported at the step that
	// reads it). 0 means DefaultMaxInMemory; negative: always on demand.
	MaxInMemory int64
	// Parallel is the number of decoding goroutines (GOMAXPROCS when ≤ 0).
	Parallel int

	// Shared: a fixed-format dataset of 8-bit pixels (mnist, fashion-mnist,
	// cifar10, svhn) is decoded once into a cache file under
	// dir/.logitpair-cache (CacheDir) and memory-mapped read-only, so that
	// the processes of one machine that open it (a cluster's workers) share
	// one copy of its pixels in the page cache instead of holding one each
	// (MNIST's training set: 47 MB). The file is named after the source
	// files' names, sizes and modification times, and checked on every open
	// (header, size and a CRC-32C of its content): a stale or corrupt file is
	// rebuilt, never used. Where it cannot be written (a read-only data
	// directory) or mapped, the dataset is held in memory as without Shared.
	// Image folders ignore it. See Dataset.Close for the mapping's lifetime.
	Shared bool
	// Note, when set, hears one line for each thing Shared did that an
	// operator may want to know: the file mapped or built, a bad cache file
	// rebuilt, a fallback to memory and why.
	Note func(msg string)
}

// WithShared returns o with Shared set and notes going to note (nil: none).
func (o OpenOptions) WithShared(note func(msg string)) OpenOptions {
	o.Shared, o.Note = true, note
	return o
}

// Open opens split ("train" or "test") of a dataset as a Source: Load's
// fixed formats (mnist, fashion-mnist, cifar10, svhn) in memory, or one of
// these image-folder layouts of JPEG/PNG files (told apart by magic;
// grayscale expanded to 3 channels, alpha ignored) under dir, every image
// resized so that its shorter side is o.Resize and center-cropped to
// o.H×o.W, pixels in [0,1], no augmentation:
//
//	tiny-imagenet  train: dir/train/<wnid>/images/*.JPEG (any depth below
//	               <wnid>/); test: dir/val/val_annotations.txt (file name,
//	               tab, WNID, …) with the images in dir/val/images/ (or
//	               dir/val/). The classes are dir/wnids.txt's WNIDs (or
//	               else train/'s folder names), sorted; label = index.
//	               Tiny ImageNet's test/ has no labels and is not used.
//	imagefolder    train: dir/train/<class>/* ; test: dir/val/<class>/* or
//	               else dir/test/<class>/*. The classes are train/'s folder
//	               names sorted (a test folder of another class is an
//	               error); without train/, the test split's own.
//	imagenet       train: dir/train/<wnid>/*.JPEG; test: dir/val/<wnid>/*
//	               (class folders), or the flat dir/val/*.JPEG of the
//	               ILSVRC2012 release with ImageNetGroundTruth and
//	               ImageNetIDWNIDs in dir (or dir/val/); labels index
//	               the sorted WNIDs, as train/'s.
//
// A corrupt image gives a *FormatError naming the file; a missing label
// file, class or image an error naming the missing path. With o.Shared the
// fixed formats are memory-mapped from a cache file shared between
// processes (see OpenOptions.Shared).
func Open(name, dir, split string, o OpenOptions) (Source, error) {
	if split != "train" && split != "test" {
		return nil, fmt.Errorf("data: split %q: want \"train\" or \"test\"", split)
	}
	if !IsFolderDataset(name) {
		if o.Shared {
			return openShared(name, dir, split, o.Note)
		}
		return Load(name, dir, split)
	}
	if o.H <= 0 || o.W <= 0 {
		return nil, fmt.Errorf("data: %s: image size %dx%d must be positive (the model's image_size)", name, o.H, o.W)
	}
	fo := FolderOptions{Name: name, H: o.H, W: o.W, Resize: o.Resize}
	if fo.Resize == 0 {
		fo.Resize = max(o.H, o.W)
	}
	var f *ImageFolder
	var err error
	switch name {
	case TinyImageNet:
		f, err = openTinyImageNet(dir, split, fo)
	case ImageFolderName:
		f, err = openImageFolder(dir, split, fo)
	case ImageNet:
		f, err = openImageNet(dir, split, fo)
	}
	if err != nil {
		return nil, err
	}
	limit := o.MaxInMemory
	if limit == 0 {
		limit = DefaultMaxInMemory
	}
	if limit > 0 && int64(f.Info().Len)*int64(f.Info().Size())*4 <= limit {
		return Materialize(f, o.Parallel)
	}
	return f, nil
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// needDir is a *MissingError when dir has no folder sub (one of subs).
func needDir(name, dir, split string, subs ...string) error {
	for _, s := range subs {
		if isDir(filepath.Join(dir, s)) {
			return nil
		}
	}
	e := &MissingError{Dataset: name, Dir: dir, Split: split}
	if isDir(dir) {
		e.Missing = []string{strings.Join(subs, "/ or ") + "/"}
	}
	return e
}

const (
	tinyLayout   = "DIR/train/<wnid>/images/*.JPEG, DIR/val/images/*.JPEG with DIR/val/val_annotations.txt, DIR/wnids.txt"
	folderLayout = "DIR/train/<class>/*, DIR/val/<class>/* or DIR/test/<class>/*"
	inetLayout   = "DIR/train/<wnid>/*.JPEG, DIR/val/<wnid>/* or flat DIR/val/*.JPEG with DIR/" + ImageNetGroundTruth + " and DIR/" + ImageNetIDWNIDs
)

func openTinyImageNet(dir, split string, fo FolderOptions) (*ImageFolder, error) {
	if split == "test" {
		val := filepath.Join(dir, "val")
		if err := needDir(TinyImageNet, dir, split, "val"); err != nil {
			return nil, err
		}
		return OpenTinyImageNetVal(val, fo)
	}
	train := filepath.Join(dir, "train")
	if err := needDir(TinyImageNet, dir, split, "train"); err != nil {
		return nil, err
	}
	if wnids := filepath.Join(dir, "wnids.txt"); exists(wnids) {
		classes, err := ReadClassList(wnids)
		if err != nil {
			return nil, err
		}
		// Every listed class must have its folder (sorted, as the val split).
		fo.Classes = slices.Sorted(slices.Values(classes))
		for _, c := range fo.Classes {
			if !isDir(filepath.Join(train, c)) {
				return nil, fmt.Errorf("data: %s: class %s of %s has no folder %s", TinyImageNet, c, wnids, filepath.Join(train, c))
			}
		}
	}
	return OpenClassFolders(train, fo)
}

func openImageFolder(dir, split string, fo FolderOptions) (*ImageFolder, error) {
	train := filepath.Join(dir, "train")
	if split == "train" {
		if err := needDir(ImageFolderName, dir, split, "train"); err != nil {
			return nil, err
		}
		return OpenClassFolders(train, fo)
	}
	if err := needDir(ImageFolderName, dir, split, "val", "test"); err != nil {
		return nil, err
	}
	test := filepath.Join(dir, "val")
	if !isDir(test) {
		test = filepath.Join(dir, "test")
	}
	return openTestClassFolders(ImageFolderName, train, test, fo)
}

// openTestClassFolders opens the test split's class folders with train's
// class list (when train exists), so that labels agree across the splits.
func openTestClassFolders(name, train, test string, fo FolderOptions) (*ImageFolder, error) {
	if isDir(train) {
		classes, err := ClassDirNames(train)
		if err != nil {
			return nil, err
		}
		testClasses, err := ClassDirNames(test)
		if err != nil {
			return nil, err
		}
		for _, c := range testClasses {
			if _, found := slices.BinarySearch(classes, c); !found {
				return nil, fmt.Errorf("data: %s: class folder %s has no training folder in %s", name, filepath.Join(test, c), train)
			}
		}
		if len(testClasses) == 0 {
			return nil, fmt.Errorf("data: %s: no class folders in %s", name, test)
		}
		// Only the test split's folders are read; absent classes keep their label.
		fo.Classes = classes
		return openSomeClassFolders(test, testClasses, fo)
	}
	return OpenClassFolders(test, fo)
}

// openSomeClassFolders opens the folders present of the class list
// fo.Classes (labels index the full list).
func openSomeClassFolders(dir string, present []string, fo FolderOptions) (*ImageFolder, error) {
	all := fo.Classes
	fo.Classes = present
	f, err := OpenClassFolders(dir, fo)
	if err != nil {
		return nil, err
	}
	index := classIndex(all)
	for i, l := range f.Labels {
		f.Labels[i] = int32(index[present[l]])
	}
	f.ClassNames, f.NumClasses = all, len(all)
	return f, nil
}

func openImageNet(dir, split string, fo FolderOptions) (*ImageFolder, error) {
	train := filepath.Join(dir, "train")
	if split == "train" {
		if err := needDir(ImageNet, dir, split, "train"); err != nil {
			return nil, err
		}
		return OpenClassFolders(train, fo)
	}
	val := filepath.Join(dir, "val")
	if err := needDir(ImageNet, dir, split, "val"); err != nil {
		return nil, err
	}
	sub, err := ClassDirNames(val)
	if err != nil {
		return nil, err
	}
	if len(sub) > 0 {
		return openTestClassFolders(ImageNet, train, val, fo)
	}
	find := func(base string) (string, error) {
		for _, d := range []string{dir, val} {
			if p := filepath.Join(d, base); exists(p) {
				return p, nil
			}
		}
		return "", fmt.Errorf("data: %s: flat validation folder %s needs %s (in %s or %s; layout: %s)",
			ImageNet, val, base, dir, val, inetLayout)
	}
	gt, err := find(ImageNetGroundTruth)
	if err != nil {
		return nil, err
	}
	ids, err := find(ImageNetIDWNIDs)
	if err != nil {
		return nil, err
	}
	if fo.IDClasses, err = ReadClassList(ids); err != nil {
		return nil, err
	}
	if isDir(train) {
		// Labels index train/'s sorted folder names; every ID's WNID must be one.
		if fo.Classes, err = ClassDirNames(train); err != nil {
			return nil, err
		}
		index := classIndex(fo.Classes)
		for i, c := range fo.IDClasses {
			if _, ok := index[c]; !ok {
				return nil, fmt.Errorf("data: %s: WNID %s of ID %d in %s has no training folder in %s", ImageNet, c, i+1, ids, train)
			}
		}
	}
	return OpenImageNetVal(val, gt, fo)
}

// unknownDataset is the error for a name neither Load nor Open knows.
func unknownDataset(name string) error {
	return fmt.Errorf("data: unknown dataset %q (want %s)", name, strings.Join(Datasets(), ", "))
}
