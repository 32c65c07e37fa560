package data

import "math"

// LoadSVHN loads an SVHN cropped-digits file (train_32x32.mat,
// test_32x32.mat or extra_32x32.mat) as distributed: a MATLAB Level 5
// MAT-file, plain or with compressed (zlib) elements, holding X (uint8,
// 32×32×3×N in MATLAB's column-major order: element (h,w,c,n) at
// h + 32·(w + 32·(c + 3·n))) and y (N×1, stored as any numeric type, values
// 1…10 where 10 means the digit 0). The result has labels 0…9.
func LoadSVHN(path string) (*Dataset, error) {
	arrs, size, err := readMAT(path, func(n string) bool { return n == "X" || n == "y" })
	if err != nil {
		return nil, err
	}
	x, y := arrs["X"], arrs["y"]
	if x == nil || y == nil {
		return nil, formatErr(path, size, nil, "SVHN file lacks a numeric array X or y (reached the end of the file)")
	}
	dims := x.dims
	if len(dims) == 3 {
		dims = append(dims, 1) // MATLAB drops a trailing singleton dimension
	}
	if len(dims) != 4 || dims[0] != 32 || dims[1] != 32 || dims[2] != 3 {
		off, note := x.offsetOf(0)
		return nil, formatErr(path, off, nil, "SVHN array X has dimensions %v, want 32x32x3xN%s", x.dims, note)
	}
	n := dims[3]
	if y.numel() != n || len(y.dims) != 2 || (y.dims[0] != 1 && y.dims[1] != 1 && n != 0) {
		off, note := y.offsetOf(0)
		return nil, formatErr(path, off, nil, "SVHN array y has dimensions %v for %d images in X%s", y.dims, n, note)
	}
	const plane = 32 * 32
	d := &Dataset{Name: "svhn", C: 3, H: 32, W: 32, Classes: 10, Labels: make([]int32, n)}
	for i := 0; i < n; i++ {
		v := y.value(i)
		if v != math.Trunc(v) || v < 1 || v > 10 {
			off, note := y.offsetOf(i)
			return nil, formatErr(path, off, nil, "SVHN label %v of example %d out of range 1..10%s", v, i, note)
		}
		d.Labels[i] = int32(v) % 10
	}
	if x.dataType == miUINT8 {
		// Kept as bytes (see Dataset).
		d.Pixels = make([]uint8, n*3*plane)
		// MATLAB index h + 32·(w + 32·(c + 3·n)) → CHW index c·1024 + h·32 + w:
		// within one (c,n) plane a transpose.
		for k := 0; k < n*3; k++ {
			src := x.data[k*plane : (k+1)*plane]
			dst := d.Pixels[k*plane : (k+1)*plane]
			for w := 0; w < 32; w++ {
				col := src[w*32 : w*32+32]
				for h, b := range col {
					dst[h*32+w] = b
				}
			}
		}
		return d, nil
	}
	// Other numeric types (double, single, …) may hold values between the
	// 8-bit steps: kept as float32.
	d.Images = make([]float32, n*3*plane)
	for k := 0; k < n*3; k++ {
		for w := 0; w < 32; w++ {
			for h := 0; h < 32; h++ {
				i := k*plane + w*32 + h
				v := x.value(i)
				if !(v >= 0 && v <= 255) {
					off, note := x.offsetOf(i)
					return nil, formatErr(path, off, nil, "SVHN pixel value %v outside 0..255%s", v, note)
				}
				d.Images[k*plane+h*32+w] = float32(v / 255)
			}
		}
	}
	return d, nil
}
