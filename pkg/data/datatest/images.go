package datatest

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ClassColor is the color of class k's images in the image trees below.
func ClassColor(k int) color.RGBA {
	palette := []color.RGBA{{220, 30, 30, 255}, {30, 200, 40, 255}, {40, 50, 210, 255}, {200, 200, 30, 255}}
	return palette[k%len(palette)]
}

// Image returns an h×w image of class k's color with a faint per-image
// pattern (so no two images are equal).
func Image(k, i, h, w int) *image.RGBA {
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	c := ClassColor(k)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			d := uint8((x*7 + y*3 + i*11) % 16)
			m.SetRGBA(x, y, color.RGBA{c.R - d, c.G - d, c.B - d, 255})
		}
	}
	return m
}

// Encode returns img as PNG bytes, or JPEG (quality 95) when jpg is set.
func Encode(t testing.TB, img image.Image, jpg bool) []byte {
	t.Helper()
	var b bytes.Buffer
	var err error
	if jpg {
		err = jpeg.Encode(&b, img, &jpeg.Options{Quality: 95})
	} else {
		err = png.Encode(&b, img)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// WriteFile writes b to dir/name, creating folders, and returns the path.
func WriteFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// WriteTinyImageNet writes Tiny ImageNet's layout under dir for the given
// WNIDs (wnids.txt in the given order; labels follow the sorted order):
// train/<wnid>/images/<wnid>_<i>.JPEG (perClass h×w JPEGs each, plus the
// <wnid>_boxes.txt the release has), and val/images/val_<j>.JPEG with
// val/val_annotations.txt, valPerClass per class, interleaved by class.
// Image colors follow each WNID's position in sorted order (ClassColor).
func WriteTinyImageNet(t testing.TB, dir string, wnids []string, perClass, valPerClass, h, w int) {
	t.Helper()
	WriteFile(t, dir, "wnids.txt", []byte(strings.Join(wnids, "\n")+"\n"))
	sorted := append([]string(nil), wnids...)
	for i := 1; i < len(sorted); i++ {
		for j := i; j > 0 && sorted[j] < sorted[j-1]; j-- {
			sorted[j], sorted[j-1] = sorted[j-1], sorted[j]
		}
	}
	for k, wnid := range sorted {
		for i := 0; i < perClass; i++ {
			WriteFile(t, dir, fmt.Sprintf("train/%s/images/%s_%d.JPEG", wnid, wnid, i), Encode(t, Image(k, i, h, w), true))
		}
		WriteFile(t, dir, fmt.Sprintf("train/%s/%s_boxes.txt", wnid, wnid), []byte("boxes\n"))
	}
	var ann strings.Builder
	j := 0
	for i := 0; i < valPerClass; i++ {
		for k, wnid := range sorted {
			name := fmt.Sprintf("val_%d.JPEG", j)
			WriteFile(t, dir, "val/images/"+name, Encode(t, Image(k, 100+j, h, w), true))
			fmt.Fprintf(&ann, "%s\t%s\t0\t0\t%d\t%d\n", name, wnid, w-1, h-1)
			j++
		}
	}
	WriteFile(t, dir, "val/val_annotations.txt", []byte(ann.String()))
}

// WriteImageFolder writes the class-subfolder layout under dir:
// <split>/<class>/<i>.png (or .jpg when jpg) for each split in splits
// (e.g. "train", "val"), perClass h×w images of ClassColor(k) for the k-th
// class in sorted order.
func WriteImageFolder(t testing.TB, dir string, splits, classes []string, perClass, h, w int, jpg bool) {
	t.Helper()
	ext := ".png"
	if jpg {
		ext = ".jpg"
	}
	for s, split := range splits {
		for k, c := range classes {
			for i := 0; i < perClass; i++ {
				WriteFile(t, dir, fmt.Sprintf("%s/%s/%d%s", split, c, i, ext), Encode(t, Image(k, 50*s+i, h, w), jpg))
			}
		}
	}
}
