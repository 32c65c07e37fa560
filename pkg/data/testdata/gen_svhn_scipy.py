# Writes svhn_scipy_plain.mat and svhn_scipy_zlib.mat: SVHN-format MAT files
# made by an independent writer (SciPy's scipy.io.savemat), to check the Go
# reader against. Run with Debian's python3-scipy: /usr/bin/python3 gen_svhn_scipy.py
import numpy as np
import scipy.io

n = 2
X = np.zeros((32, 32, 3, n), dtype=np.uint8)
for h in range(32):
    for w in range(32):
        for c in range(3):
            for k in range(n):
                X[h, w, c, k] = (h + 2 * w + 5 * c + 11 * k) % 256
y = np.array([[10.0], [3.0]])
scipy.io.savemat("svhn_scipy_plain.mat", {"X": X, "y": y}, do_compression=False)
scipy.io.savemat("svhn_scipy_zlib.mat", {"X": X, "y": y}, do_compression=True)
